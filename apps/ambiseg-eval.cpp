// ambiseg-eval — GED, dice, IoU and HM-IoU of sampled masks against annotations (.npy).
// All logic lives in ambiseg/metrics/eval_cli.hpp, where the tests exercise it.
#include <iostream>
#include <string>
#include <vector>

#include "ambiseg/metrics/eval_cli.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  return ambiseg::metrics::run_eval_cli(args, std::cout, std::cerr);
}
