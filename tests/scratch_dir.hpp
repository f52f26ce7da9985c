// tests/scratch_dir.hpp — a fresh temporary folder per test (removed when it goes out of
// scope) and whole-file reads, shared by the tests that write files.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <system_error>

#include <unistd.h>

namespace ambiseg_test {

struct scratch_dir {
  std::filesystem::path path;
  // The pid keeps parallel test executables apart, the counter the tests of one executable.
  explicit scratch_dir(const std::string& tag) {
    static std::atomic<unsigned> counter{0};
    path = std::filesystem::temp_directory_path() /
           ("ambiseg-test-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~scratch_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  std::filesystem::path operator/(const std::string& name) const { return path / name; }
  std::size_t file_count() const {
    return static_cast<std::size_t>(
        std::distance(std::filesystem::directory_iterator(path), std::filesystem::directory_iterator{}));
  }
};

inline std::string file_bytes(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace ambiseg_test
