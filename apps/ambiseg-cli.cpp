// ambiseg — train a diffusion segmentation model, draw masks, score them, see them.
// All logic lives in apps/ambiseg_apps/ (cli.hpp parses, commands.hpp runs, run_cli.cpp wraps
// them into the tool), where tests reach it.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "ambiseg_apps/run_cli.hpp"

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  ambiseg::apps::run_options options;
  options.interactive = isatty(fileno(stderr)) != 0;
  return ambiseg::apps::run_cli(args, std::cout, std::cerr, options);
}
