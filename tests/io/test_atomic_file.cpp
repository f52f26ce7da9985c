// Tests of io/atomic_file.hpp: stale temporaries of dead writers, a file-size limit
// (SIGXFSZ) and an unwritable folder, each an io_error with the system's reason.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ambiseg/io/atomic_file.hpp"
#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using ambiseg::io_error;
using ambiseg_test::scratch_dir;

namespace {
void touch(const fs::path& p) { std::ofstream(p) << "partial"; }

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// The PID of a process that has exited and been reaped.
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

}  // namespace

TEST_CASE("atomic file: a dead writer's temporary of the same target is removed", "[io][atomic]") {
  const scratch_dir scratch("atomic-stale");
  const fs::path& dir = scratch.path;
  const pid_t dead = dead_pid();
  REQUIRE(::kill(dead, 0) != 0);
  const std::string dead_tmp = "model.safetensors.tmp-" + std::to_string(dead) + "-0";
  const std::string live_tmp = "model.safetensors.tmp-" + std::to_string(::getppid()) + "-3";
  const std::string other_target = "other.safetensors.tmp-" + std::to_string(dead) + "-0";
  const std::string not_a_temp = "model.safetensors.tmp-" + std::to_string(dead) + "-0.keep";
  const std::string no_counter = "model.safetensors.tmp-" + std::to_string(dead);
  for (const auto& n : {dead_tmp, live_tmp, other_target, not_a_temp, no_counter}) touch(dir / n);

  ambiseg::io::write_file_atomically(dir / "model.safetensors", "new content");

  std::vector<std::string> expected{"model.safetensors", live_tmp, other_target, not_a_temp, no_counter};
  std::sort(expected.begin(), expected.end());
  CHECK(names_in(dir) == expected);
  std::ifstream in(dir / "model.safetensors");
  CHECK(std::string(std::istreambuf_iterator<char>(in), {}) == "new content");
}

TEST_CASE("atomic file: a file-size limit is an io_error, not SIGXFSZ", "[io][atomic]") {
  const scratch_dir scratch("atomic-fsize");
  const fs::path& dir = scratch.path;
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {  // the limit applies to this process only
    ::close(pipe_fds[0]);
    struct rlimit limit {4096, 4096};
    ::setrlimit(RLIMIT_FSIZE, &limit);
    std::string message = "(no io_error)";
    try {
      ambiseg::io::write_file_atomically(dir / "big.bin", std::string(1 << 20, 'x'));
    } catch (const io_error& e) {
      message = e.what();
    }
    const ssize_t written = ::write(pipe_fds[1], message.data(), message.size());
    ::_exit(written == static_cast<ssize_t>(message.size()) ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  std::string message;
  char buffer[512];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) message.append(buffer, n);
  ::close(pipe_fds[0]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK_FALSE(WIFSIGNALED(status));
  CHECK(WIFEXITED(status));
  CHECK_THAT(message, Catch::Contains("big.bin") && Catch::Contains("File too large"));
  CHECK(names_in(dir).empty());  // neither the target nor a partial temporary
}

TEST_CASE("atomic file: an unwritable folder's error gives the reason", "[io][atomic]") {
  const scratch_dir scratch("atomic-readonly");
  const fs::path& dir = scratch.path;
  // A regular file where the folder should be: refused for root too.
  touch(dir / "plain_file");
  CHECK_THROWS_WITH(ambiseg::io::write_file_atomically(dir / "plain_file" / "x.npy", "x"),
                    Catch::Contains("for writing: Not a directory") && Catch::Contains("x.npy"));

  const fs::path read_only = dir / "read_only";
  fs::create_directories(read_only);
  ::chmod(read_only.c_str(), 0555);
  if (::geteuid() == 0) {
    WARN("skipped the read-only folder check: root ignores permissions");
  } else {
    CHECK_THROWS_WITH(ambiseg::io::write_file_atomically(read_only / "x.npy", "x"),
                      Catch::Contains("cannot open '") && Catch::Contains("for writing: Permission denied") &&
                      Catch::Contains("x.npy"));
  }
  ::chmod(read_only.c_str(), 0755);
}
