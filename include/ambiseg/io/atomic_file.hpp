// ambiseg/io/atomic_file.hpp — write a file so that it is either complete or absent.
//
// Data goes to "<path>.tmp-<pid>-<n>" in the same directory, is flushed and fsync'ed,
// then rename(2)d over the target: readers see the old file or the new one, never half
// of one, even if the process is killed mid-write.
//
// A process killed mid-write (SIGKILL, a crash) leaves its temporary behind. The next
// writer of the same target removes the temporaries of that target whose process is gone
// (kill(pid, 0) fails with ESRCH); a live process's temporary and every other file are
// kept. PIDs are those of this machine's PID namespace: a folder shared with writers on
// other machines or in other containers can see their live temporaries removed, which
// makes their commit fail with an error, never a damaged target.
//
// Every failure is an io_error naming the file and the system's reason (strerror). A
// file-size limit (ulimit -f) would otherwise kill the process with SIGXFSZ before write()
// can fail, so the first writer sets SIGXFSZ to ignored when its disposition is the
// default; the write then fails with EFBIG and is reported like a full disk. The
// disposition is not restored: it is process-wide, so restoring it while another thread
// writes would bring the signal back for that thread, and with it ignored every write past
// the limit is still an error the writer reports. Child processes inherit it (exec keeps
// ignored signals ignored), so a tool they run sees EFBIG instead of being killed.
#pragma once

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

#include <signal.h>
#include <unistd.h>

#include "ambiseg/core/error.hpp"

namespace ambiseg::io {

namespace atomic_detail {

inline void ignore_file_size_signal() {
  static const bool installed = [] {
    struct sigaction current {};
    if (::sigaction(SIGXFSZ, nullptr, &current) == 0 && current.sa_handler == SIG_DFL &&
        !(current.sa_flags & SA_SIGINFO)) {
      struct sigaction ignore {};
      ignore.sa_handler = SIG_IGN;
      sigemptyset(&ignore.sa_mask);
      ::sigaction(SIGXFSZ, &ignore, nullptr);
    }
    return true;
  }();
  (void)installed;
}

// The PID in "<target name>.tmp-<pid>-<n>", or 0 when `name` is not a temporary of target.
inline pid_t temporary_owner(std::string_view name, std::string_view target_name) {
  const std::string_view marker = ".tmp-";
  if (name.size() <= target_name.size() + marker.size() ||
      name.substr(0, target_name.size()) != target_name ||
      name.substr(target_name.size(), marker.size()) != marker)
    return 0;
  std::string_view rest = name.substr(target_name.size() + marker.size());
  const std::size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string_view::npos || dash + 1 == rest.size() || dash > 9) return 0;
  auto all_digits = [](std::string_view s) {
    for (char c : s)
      if (c < '0' || c > '9') return false;
    return true;
  };
  if (!all_digits(rest.substr(0, dash)) || !all_digits(rest.substr(dash + 1))) return 0;
  pid_t pid = 0;
  for (char c : rest.substr(0, dash)) pid = pid * 10 + (c - '0');
  return pid;
}

// Removes "<target>.tmp-<pid>-<n>" files left by processes that no longer exist.
inline void remove_stale_temporaries(const std::filesystem::path& target) {
  namespace fs = std::filesystem;
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string target_name = target.filename().string();
  const pid_t self = ::getpid();
  std::error_code ec;
  fs::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const pid_t pid = temporary_owner(it->path().filename().string(), target_name);
    if (pid <= 0 || pid == self) continue;
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      std::error_code ignored;
      fs::remove(it->path(), ignored);
    }
  }
}

inline std::string reason(int error_number) { return std::strerror(error_number); }

}  // namespace atomic_detail

class atomic_file_writer {
 public:
  explicit atomic_file_writer(std::filesystem::path target) : target_(std::move(target)) {
    static std::atomic<unsigned> counter{0};
    atomic_detail::ignore_file_size_signal();
    atomic_detail::remove_stale_temporaries(target_);
    temp_ = target_;
    temp_ += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    file_ = std::fopen(temp_.c_str(), "wb");
    throw_if<io_error>(!file_, "cannot open '", temp_.string(), "' for writing: ",
                       atomic_detail::reason(errno), " (the temporary file for '", target_.string(), "')");
  }
  atomic_file_writer(const atomic_file_writer&) = delete;
  atomic_file_writer& operator=(const atomic_file_writer&) = delete;
  ~atomic_file_writer() {
    if (file_) discard();  // not committed: no partial file remains
  }

  void write(const void* data, std::size_t bytes) {
    throw_if<io_error>(!file_, "write after commit to '", target_.string(), "'");
    errno = 0;
    if (bytes && std::fwrite(data, 1, bytes, file_) != bytes)
      throw io_error(failure("write failed for", errno));
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  // Flushes, fsyncs and renames over the target. Without commit() nothing is published.
  void commit() {
    throw_if<io_error>(!file_, "commit called twice for '", target_.string(), "'");
    errno = 0;
    if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) {
      const int flush_errno = errno;
      discard();
      throw io_error(failure("could not write", flush_errno));
    }
    const int closed = std::fclose(file_);
    const int close_errno = errno;
    file_ = nullptr;
    std::error_code ec;
    if (closed == 0) std::filesystem::rename(temp_, target_, ec);
    if (closed != 0 || ec) {
      std::error_code ignored;
      std::filesystem::remove(temp_, ignored);
      throw io_error(closed != 0 ? failure("could not write", close_errno)
                                 : "could not rename '" + temp_.string() + "' to '" + target_.string() +
                                       "': " + ec.message());
    }
  }

 private:
  void discard() {
    std::fclose(file_);
    file_ = nullptr;
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
  // "<what> '<target>': <the system's reason>" (EFBIG: "File too large", ENOSPC: "No space
  // left on device").
  std::string failure(const char* what, int error_number) const {
    return std::string(what) + " '" + target_.string() +
           "': " + (error_number ? atomic_detail::reason(error_number) : "unknown error");
  }

  std::filesystem::path target_, temp_;
  std::FILE* file_ = nullptr;
};

// Convenience: the whole content at once.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  atomic_file_writer w(path);
  w.write(content);
  w.commit();
}

}  // namespace ambiseg::io
