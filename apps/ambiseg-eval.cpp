// ambiseg-eval — GED, dice, IoU and HM-IoU of sampled masks against annotations (.npy).
// All logic lives in apps/ambiseg_apps/eval_tool.hpp, where the tests exercise it.
#include <iostream>
#include <string>
#include <vector>

#include "ambiseg_apps/eval_tool.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return ambiseg::apps::run_eval_tool(args, std::cout, std::cerr);
}
