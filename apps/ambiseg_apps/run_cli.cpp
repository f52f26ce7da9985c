// ambiseg_apps/run_cli.cpp — the definition of run_cli (run_cli.hpp): compiled once per
// program that runs the tool (the executable, test_apps, the CUDA tests), with that
// program's devices.
#include "ambiseg_apps/run_cli.hpp"

#include <exception>
#include <new>

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
    return 2;
  }
  try {
    return run_command(c, out, err, ro);
  } catch (const std::bad_alloc&) {
    err << "\n" << prefix << ": error: out of memory (use a smaller --batch, --crop, -n or --images)\n";
    return 1;
  } catch (const std::exception& e) {
    err << "\n" << prefix << ": error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ambiseg::apps
