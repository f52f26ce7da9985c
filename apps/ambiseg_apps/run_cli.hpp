// ambiseg_apps/run_cli.hpp — the whole `ambiseg` tool as one call, declared apart from its
// definition (run_cli.cpp) so that a file which only runs the tool does not compile every
// command again: each test file that did cost 45 s on 2 cores, 90 s under the sanitizers.
#pragma once

#include <ostream>
#include <span>
#include <string>

#include "ambiseg/train/communicator.hpp"

namespace ambiseg::apps {

struct run_options {
  bool interactive = false;  // redraw one progress line with '\r' (a terminal)
  // The ranks of an `mpirun` launch (train/mpi_communicator.hpp), or none: `train` runs
  // data parallel over them; the other commands run on rank 0 alone.
  train::communicator* group = nullptr;
};

// Parse, run, report errors as one line (exit 2 for usage, 1 otherwise). Runs on the CUDA
// device (--device cuda) when run_cli.cpp was compiled against ambiseg::cuda.
int run_cli(std::span<const std::string> args, std::ostream& out, std::ostream& err, const run_options& ro = {});

}  // namespace ambiseg::apps
