// ambiseg/io/atomic_file.hpp — write a file so that it is either complete or absent.
//
// Data goes to "<path>.tmp-<pid>-<n>" in the same directory, is flushed and fsync'ed,
// then rename(2)d over the target: readers see the old file or the new one, never half
// of one, even if the process is killed mid-write.
#pragma once

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include <fcntl.h>
#include <unistd.h>

#include "ambiseg/core/error.hpp"

namespace ambiseg::io {

class atomic_file_writer {
 public:
  explicit atomic_file_writer(std::filesystem::path target) : target_(std::move(target)) {
    static std::atomic<unsigned> counter{0};
    temp_ = target_;
    temp_ += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    file_ = std::fopen(temp_.c_str(), "wb");
    throw_if<io_error>(!file_, "cannot open '", temp_.string(), "' for writing (for '",
                       target_.string(), "')");
  }
  atomic_file_writer(const atomic_file_writer&) = delete;
  atomic_file_writer& operator=(const atomic_file_writer&) = delete;
  ~atomic_file_writer() {
    if (file_) {  // not committed: discard the partial file
      std::fclose(file_);
      std::error_code ec;
      std::filesystem::remove(temp_, ec);
    }
  }

  void write(const void* data, std::size_t bytes) {
    throw_if<io_error>(!file_, "write after commit to '", target_.string(), "'");
    if (bytes && std::fwrite(data, 1, bytes, file_) != bytes)
      throw io_error("write failed for '" + target_.string() + "' (disk full?)");
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  // Flushes, fsyncs and renames over the target. Without commit() nothing is published.
  void commit() {
    throw_if<io_error>(!file_, "commit called twice for '", target_.string(), "'");
    bool ok = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
    ok = (std::fclose(file_) == 0) && ok;
    file_ = nullptr;
    std::error_code ec;
    if (ok) std::filesystem::rename(temp_, target_, ec);
    if (!ok || ec) {
      std::filesystem::remove(temp_, ec);
      throw io_error("could not write '" + target_.string() + "'");
    }
  }

 private:
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
