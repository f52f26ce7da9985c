// ambiseg — train a diffusion segmentation model, draw masks, score them, see them.
// All logic lives in apps/ambiseg_apps/ (cli.hpp parses, commands.hpp runs, run_cli.cpp wraps
// them into the tool), where tests reach it.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include "ambiseg_apps/run_cli.hpp"

#if defined(AMBISEG_WITH_MPI)
#include <optional>

#include "ambiseg/train/mpi_communicator.hpp"
#endif

int main(int argc, char** argv) {
  ambiseg::apps::run_options options;
#if defined(AMBISEG_WITH_MPI)
  // Started by mpirun: one rank of a data-parallel run (docs/distributed.md).
  const ambiseg::train::mpi_session mpi(&argc, &argv);
  std::optional<ambiseg::train::mpi_communicator> group;
  if (mpi.active()) group.emplace();
  options.group = group ? &*group : nullptr;
#endif
  const std::vector<std::string> args(argv + 1, argv + argc);
  options.interactive = isatty(fileno(stderr)) != 0 && (!options.group || options.group->rank() == 0);
  return ambiseg::apps::run_cli(args, std::cout, std::cerr, options);
}
