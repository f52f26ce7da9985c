// ambiseg_apps/output.hpp — where the tools write: folders made (or checked) before any
// work, so that a run never computes for minutes and then fails on its --out, and every
// refusal names the path and the system's reason.
#pragma once

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

#include "ambiseg/core/error.hpp"

namespace ambiseg::apps {

// Creates `dir` (and its parents) unless it exists. `what` names it for the message
// ("--out folder").
inline void create_folder(const std::filesystem::path& dir, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(dir, ec);
  if (fs::is_directory(st)) return;
  throw_if<io_error>(fs::exists(st), what, " '", dir.string(), "' is a file, not a folder");
  fs::create_directories(dir, ec);
  throw_if<io_error>(ec.operator bool(), "cannot create the ", what, " '", dir.string(), "': ", ec.message());
}

// Proves that files can be created in `dir` by creating and removing one; the system's
// reason (read-only file system, permission denied, no space) is in the message.
inline void check_writable_folder(const std::filesystem::path& dir, const std::string& what) {
  static std::atomic<unsigned> counter{0};
  const std::filesystem::path probe =
      dir / (".ambiseg-write-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  const int reason = errno;
  throw_if<io_error>(f == nullptr, "cannot write in the ", what, " '", dir.string(), "': ", std::strerror(reason));
  std::fclose(f);
  std::error_code ec;
  std::filesystem::remove(probe, ec);
}

// An output folder ready for files: created if missing, refused if it is a file or
// cannot be written.
inline void prepare_output_folder(const std::filesystem::path& dir, const std::string& what) {
  create_folder(dir, what);
  check_writable_folder(dir, what);
}

// A file to be written later (--save-x0 FILE): its folder must exist and take files, and
// the path must not be a folder.
inline void check_output_file(const std::filesystem::path& file, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  throw_if<io_error>(fs::is_directory(file, ec), what, " '", file.string(), "' is a folder, not a file");
  const fs::path parent = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  throw_if<io_error>(!fs::is_directory(parent, ec), what, " '", file.string(), "': the folder '", parent.string(),
                     "' does not exist");
  check_writable_folder(parent, what + " folder");
}

// An input that must be an existing regular file.
inline void check_input_file(const std::filesystem::path& file, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(file, ec);
  throw_if<io_error>(!fs::exists(st), what, " '", file.string(), "' does not exist");
  throw_if<io_error>(!fs::is_regular_file(st), what, " '", file.string(), "' is not a file");
}

}  // namespace ambiseg::apps
