// tests/apps/tool_run.hpp — one in-process run of a tool (run_cli, run_eval_tool) with its
// exit status and what it printed, and a fresh folder under the build tree per test.
#pragma once

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

namespace ambiseg_test {

struct tool_run {
  int code;
  std::string out, err;
};

// tool(args, out, err) -> exit status
template <class Tool>
tool_run run_tool(Tool&& tool, const std::vector<std::string>& args) {
  std::ostringstream out, err;
  const int code = tool(args, out, err);
  return {code, out.str(), err.str()};
}

// AMBISEG_BINARY_DIR/tests_apps_tmp/<name>, emptied.
inline std::filesystem::path fresh_build_dir(const std::string& name) {
  const auto p = std::filesystem::path(AMBISEG_BINARY_DIR) / "tests_apps_tmp" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace ambiseg_test
