// ambiseg/core/profile.hpp — an opt-in per-op profile of the host's CPU kernels: where a
// training step or a sampling run spends its time, op by op and shape by shape, with the
// arithmetic rate of each (docs/benchmarks.md, "Where the time goes: per-op profile").
//
//   profile::enable(true); ... run steps ...; for (auto& e : profile::entries()) ...
//   ops/*.hpp open a profile::scope around their CPU kernel call:
//     profile::scope timer("conv2d_forward", {N, Ci, H, W, Co, K, stride}, flop);
//
// Off (the default) a scope costs one relaxed atomic load. On, it takes a lock per op call,
// which the ops here amortise over ≥ 10 µs of work. Only CPU kernels are timed: a CUDA
// launch returns before the work is done, so a host clock would time the launch.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ambiseg::profile {

struct entry {
  std::string op;
  std::vector<std::int64_t> dims;  // the op's own shape key (its legend in ops/<op>.hpp)
  std::int64_t calls = 0;
  double seconds = 0;  // wall time inside the kernel call
  double flop = 0;     // multiply-add = 2; 0 where an op is memory-bound glue
};

namespace detail {
struct registry {
  std::atomic<bool> on{false};
  std::mutex lock;
  std::map<std::pair<std::string, std::vector<std::int64_t>>, entry> table;
};
inline registry& state() {
  static registry r;
  return r;
}
}  // namespace detail

inline bool enabled() { return detail::state().on.load(std::memory_order_relaxed); }
inline void enable(bool on) { detail::state().on.store(on, std::memory_order_relaxed); }

inline void reset() {
  auto& r = detail::state();
  const std::lock_guard<std::mutex> guard(r.lock);
  r.table.clear();
}

// Everything recorded since the last reset, the most expensive first.
inline std::vector<entry> entries() {
  auto& r = detail::state();
  std::vector<entry> out;
  {
    const std::lock_guard<std::mutex> guard(r.lock);
    for (const auto& kv : r.table) out.push_back(kv.second);
  }
  std::sort(out.begin(), out.end(), [](const entry& a, const entry& b) { return a.seconds > b.seconds; });
  return out;
}

class scope {
 public:
  scope(const char* op, std::initializer_list<std::int64_t> dims, double flop = 0) {
    if (!enabled()) return;
    active_ = true;
    op_ = op;
    dims_.assign(dims.begin(), dims.end());
    flop_ = flop;
    start_ = std::chrono::steady_clock::now();
  }
  ~scope() {
    if (!active_) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    auto& r = detail::state();
    const std::lock_guard<std::mutex> guard(r.lock);
    entry& e = r.table[{op_, dims_}];
    if (e.calls == 0) {
      e.op = op_;
      e.dims = dims_;
    }
    ++e.calls;
    e.seconds += s;
    e.flop += flop_;
  }
  scope(const scope&) = delete;
  scope& operator=(const scope&) = delete;

 private:
  bool active_ = false;
  const char* op_ = nullptr;
  std::vector<std::int64_t> dims_;
  double flop_ = 0;
  std::chrono::steady_clock::time_point start_{};
};

}  // namespace ambiseg::profile
