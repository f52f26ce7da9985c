// ambiseg_apps/run_cli.hpp — the whole `ambiseg` tool as one call, declared apart from its
// definition (run_cli.cpp) so that a file which only runs the tool does not compile every
// command again: each test file that did cost 45 s on 2 cores, 90 s under the sanitizers.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <span>
#include <string>

#include "ambiseg/train/communicator.hpp"

namespace ambiseg::apps {

// What a caller sees of a training run after each step (run_options::on_step).
struct step_progress {
  std::int64_t step = 0, total_steps = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  double seconds = 0;  // since the run started
};

struct run_options {
  bool interactive = false;  // redraw one progress line with '\r' (a terminal)
  // `train` and `distill` call it after every step; returning false ends the run at that
  // step, checkpointed (the Python package's progress callback and Ctrl-C).
  std::function<bool(const step_progress&)> on_step;
  // Rethrow a command's error after printing it, instead of returning its exit status (the
  // Python package turns the exception's type into ValueError, OSError, ...).
  bool rethrow_errors = false;
  // The ranks of an `mpirun` launch (train/mpi_communicator.hpp), or none: `train` runs
  // data parallel over them; the other commands run on rank 0 alone.
  train::communicator* group = nullptr;
};

// Parse, run, report errors as one line (exit 2 for usage, 1 otherwise). Runs on the CUDA
// device (--device cuda) when run_cli.cpp was compiled against ambiseg::cuda.
int run_cli(std::span<const std::string> args, std::ostream& out, std::ostream& err, const run_options& ro = {});

}  // namespace ambiseg::apps
