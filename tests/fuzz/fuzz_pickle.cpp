// libFuzzer target for io/pickle.hpp and the LIDC schema conversion on top of it.
// Any ambiseg::error is an accepted outcome; a crash, a sanitizer report, a leak, a hang
// or an out-of-memory is a finding.
#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "ambiseg/data/pickle_dataset.hpp"
#include "ambiseg/io/pickle.hpp"

namespace pk = ambiseg::io::pickle;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto doc = pk::loads(std::span<const std::uint8_t>(data, size));
    // Touch every reachable value once (a budget, because the memo can build cycles).
    std::vector<std::pair<const pk::value*, int>> todo{{&doc.root(), 0}};
    int budget = 10000;
    while (!todo.empty() && budget-- > 0) {
      auto [v, depth] = todo.back();
      todo.pop_back();
      if (depth > 64) continue;
      switch (v->type()) {
        case pk::kind::list:
        case pk::kind::tuple:
          for (const auto* item : v->items()) todo.push_back({item, depth + 1});
          break;
        case pk::kind::dict:
          for (const auto& [k, item] : v->as_dict()) {
            todo.push_back({k, depth + 1});
            todo.push_back({item, depth + 1});
          }
          break;
        case pk::kind::array: {
          try {
            const auto& a = v->as_array();
            if (a.numel() <= (1 << 22)) {
              const auto values = a.to_vector<double>();
              volatile double sink = values.empty() ? 0.0 : values.back();
              (void)sink;
            }
          } catch (const ambiseg::error&) {
          }
          break;
        }
        default:
          break;
      }
    }
    if (doc.root().is(pk::kind::dict)) {
      try {
        ambiseg::data::pickle_load_options opts;
        opts.max_cases = 16;
        (void)ambiseg::data::lidc_cases(doc, opts);
      } catch (const ambiseg::error&) {
      }
    }
  } catch (const ambiseg::error&) {
  }
  return 0;
}
