// ambiseg_apps/run_cli.cpp — the definition of run_cli (run_cli.hpp): compiled once per
// program that runs the tool (the executable, test_apps, the CUDA tests), with that
// program's devices.
#include "ambiseg_apps/run_cli.hpp"

#include <exception>
#include <new>
#include <sstream>
#include <variant>

#include "ambiseg_apps/commands.hpp"

namespace ambiseg::apps {
namespace {

// "ambiseg train" when args name a command, else "ambiseg": the start of every message.
std::string message_prefix(std::span<const std::string> args) {
  for (const char* cmd : {"train", "sample", "eval", "export", "distill"})
    if (!args.empty() && args[0] == cmd) return std::string("ambiseg ") + cmd;
  return "ambiseg";
}

}  // namespace

int run_cli(std::span<const std::string> args, std::ostream& out, std::ostream& err, const run_options& ro) {
  const std::string prefix = message_prefix(args);
  command c;
  try {
    c = parse_command(args);
  } catch (const std::exception& e) {
    err << prefix << ": error: " << e.what() << "\n\n" << cli_usage();
    if (ro.rethrow_errors) throw;
    return 2;
  }
  const int ranks = ro.group ? ro.group->size() : 1, rank = ro.group ? ro.group->rank() : 0;
  // Under mpirun: train, distill, sample and eval run on every rank (rank 0 speaks);
  // export and help on rank 0 alone.
  const bool spread = std::holds_alternative<train_command>(c) || std::holds_alternative<distill_command>(c) ||
                      std::holds_alternative<sample_command>(c) || std::holds_alternative<eval_command>(c);
  if (ranks > 1 && !spread && rank != 0) return 0;
  std::ostringstream silent;  // ranks other than 0 train without a word
  std::ostream& run_out = rank == 0 ? out : silent;
  std::ostream& run_err = rank == 0 ? err : silent;
  // An error on any rank of a data-parallel run ends every rank, with this rank's message
  // (the others would wait for it in their next sum forever).
  auto fail = [&](const std::string& message) {
    if (ranks > 1 && spread)
      ro.group->abort("\n" + prefix + ": error (rank " + std::to_string(rank) + " of " + std::to_string(ranks) +
                          "): " + message,
                      1);
    err << "\n" << prefix << ": error: " << message << "\n";
    return 1;
  };
  try {
    return run_command(c, run_out, run_err, ro);
  } catch (const std::bad_alloc&) {
    const int code = fail("out of memory (use a smaller --batch, --crop, -n or --images)");
    if (ro.rethrow_errors) throw;
    return code;
  } catch (const std::exception& e) {
    const int code = fail(e.what());
    if (ro.rethrow_errors) throw;
    return code;
  }
}

}  // namespace ambiseg::apps
