// ambiseg — train a diffusion segmentation model, draw masks, score them, see them.
// All logic lives in ambiseg/train/{cli,commands,commands_eval}.hpp, where tests reach it.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "ambiseg/train/commands.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  ambiseg::train::run_options options;
  options.interactive = isatty(fileno(stderr)) != 0;
  return ambiseg::train::run_cli(args, std::cout, std::cerr, options);
}
