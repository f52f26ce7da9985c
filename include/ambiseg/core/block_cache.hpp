// ambiseg/core/block_cache.hpp — the one caching allocator of the CUDA backend, written
// against a small driver interface so that its bookkeeping is plain C++ (tested on any
// machine with a fake driver). core/cuda_memory.hpp plugs in two drivers: device memory
// (tensor<T, cuda> storage and the contexts' scratch) and pinned host memory (the staging
// blocks of asynchronous uploads).
//
// Why one process-wide cache per kind and not one per context: a tensor is not tied to a
// context — a model's weights are built before any context is current, an EMA or a
// checkpoint staging tensor may outlive the trainer's context — so its block must belong
// to something that lives as long as the process. A process-wide cache is shared by every
// stream, so a block freed on the host while kernels on some stream still use it must not
// be handed to work on another stream before those kernels end. Each freed block
// therefore carries an event recorded on the legacy default stream at the moment of the
// free: that stream is ordered after all earlier work of every *blocking* stream of the
// device (cuda_context's streams are blocking), so the event completes exactly when every
// kernel that could still touch the block has finished.
//
// Reuse rules, in order, for a request of one size class:
//   1. a block freed with the same stream tag as the request: at once, without looking at
//      its event — work queued later on that stream runs after the work that used it
//      (the contexts' scratch: group-norm partial sums, reduction slots);
//   2. the oldest block whose event has completed;
//   3. a new block from the driver — unless the class already has its limit of blocks
//      waiting for their events (max(max_pending, max_pending_bytes / class size)), in
//      which case the oldest one is awaited (a bounded look-ahead: the host may run that
//      far ahead of the device, never further, and never drains the device just to
//      recycle memory). The byte bound lets small blocks run far ahead (pinned staging:
//      a sampling step uploads a few hundred bytes of coefficients) while large ones stay
//      few.
// Blocks whose writer is the *host* (pinned staging) must never be requested with a
// stream tag: the host writes them at once, not in stream order.
//
// Size classes: multiples of 512 B up to 1 MiB, then four per power of two (a block
// wastes at most 25 %, and a request never takes a block of another class). Blocks are
// cached per (device, class); the device is the driver's current device at allocation.
// Out of memory, the cache first awaits a pending block of the class, then gives its
// blocks back to the driver (after their events) and retries once.
//
// Driver interface (all functions may be called with the cache's mutex held):
//   using event = …;                         a copyable handle
//   int current_device();
//   void* malloc(std::size_t bytes);         nullptr when out of memory, throws otherwise
//   void free(void* p, int device) noexcept;
//   event create_event(int device);          throws on failure
//   bool record_event(event, int device) noexcept;  on the device's legacy default stream
//   bool event_done(event) noexcept;
//   void wait_event(event) noexcept;
//   void destroy_event(event, int device) noexcept;
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ambiseg/core/error.hpp"

namespace ambiseg {

inline constexpr std::size_t block_small_granule = 512;
inline constexpr std::size_t block_small_limit = std::size_t(1) << 20;

// The class a request of `bytes` is served from (0 for 0).
inline std::size_t block_size_class(std::size_t bytes) {
  if (bytes == 0) return 0;
  if (bytes <= block_small_limit)
    return (bytes + block_small_granule - 1) / block_small_granule * block_small_granule;
  // p = the largest power of two below bytes; classes p + p/4·{1,2,3,4}.
  std::size_t p = block_small_limit;
  while (p * 2 < bytes) p *= 2;
  const std::size_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

struct block_cache_stats {
  std::size_t bytes_in_use = 0;          // handed out and not yet returned
  std::size_t bytes_cached = 0;          // on the free lists
  std::size_t peak_bytes_in_use = 0;
  std::uint64_t device_allocations = 0;  // driver mallocs
  std::uint64_t cache_hits = 0;          // requests served from a free list
  std::uint64_t pending_waits = 0;       // hits that had to wait for a block's event
  std::uint64_t stream_reuses = 0;       // hits of rule 1 (same stream, no event needed)
  std::uint64_t device_frees = 0;        // driver frees
};

template <class Driver>
class basic_block_cache {
  using event = typename Driver::event;

 public:
  // Pending blocks per (device, class) beyond which a request awaits the oldest one
  // instead of asking the driver for more (rule 3).
  static constexpr std::size_t default_max_pending = 8;

  explicit basic_block_cache(Driver driver = {}, std::size_t max_pending = default_max_pending,
                             std::size_t max_pending_bytes = 0)
      : driver_(std::move(driver)),
        max_pending_(max_pending < 1 ? 1 : max_pending),
        max_pending_bytes_(max_pending_bytes) {}
  basic_block_cache(const basic_block_cache&) = delete;
  basic_block_cache& operator=(const basic_block_cache&) = delete;
  // Frees the cached blocks. Blocks still handed out are the owners' to return; the
  // process-wide instance is never destroyed (see cuda_memory.hpp).
  ~basic_block_cache() { release_cached(); }

  Driver& driver() { return driver_; }

  // `stream`: an opaque tag (a cudaStream_t) of the stream the block will be used on, or
  // nullptr for a block used on any stream or written by the host.
  void* allocate(std::size_t bytes, const void* stream = nullptr) {
    if (bytes == 0) return nullptr;
    const std::size_t cls = block_size_class(bytes);
    std::lock_guard lock(mutex_);
    const int device = driver_.current_device();
    void* p = take_cached(device, cls, stream);
    if (!p) p = fresh_block(device, cls);
    live_.emplace(p, block_key{device, cls});
    stats_.bytes_in_use += cls;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return p;
  }

  // Returns a block to its free list, stamped with an event on the legacy default stream
  // and with `stream` (the tag of the stream its last user ran on, or nullptr: see the
  // reuse rules). noexcept (tensors free in destructors): a pointer this cache did not
  // hand out is ignored, and a block whose event cannot be recorded (the runtime shutting
  // down) is given straight back to the driver, whose free waits for the device.
  void deallocate(void* p, const void* stream = nullptr) noexcept {
    if (!p) return;
    std::lock_guard lock(mutex_);
    auto it = live_.find(p);
    if (it == live_.end()) return;
    const block_key key = it->second;
    live_.erase(it);
    stats_.bytes_in_use -= key.cls;
    event ev{};
    bool stamped = false;
    try {
      ev = spare_event(key.device);
      stamped = driver_.record_event(ev, key.device);
      if (!stamped) driver_.destroy_event(ev, key.device);
    } catch (...) {
      stamped = false;
    }
    if (!stamped) {
      driver_.free(p, key.device);
      ++stats_.device_frees;
      return;
    }
    try {
      free_[key].push_back({p, ev, stream});
    } catch (...) {  // no memory for the list entry: wait and free instead
      driver_.wait_event(ev);
      driver_.destroy_event(ev, key.device);
      driver_.free(p, key.device);
      ++stats_.device_frees;
      return;
    }
    stats_.bytes_cached += key.cls;
  }

  // Gives every cached block back to the driver (after its event).
  void release_cached() {
    std::lock_guard lock(mutex_);
    release_cached_locked();
  }

  block_cache_stats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }
  // Blocks handed out and not returned (tests, leak checks).
  std::size_t live_blocks() const {
    std::lock_guard lock(mutex_);
    return live_.size();
  }

 private:
  struct block_key {
    int device;
    std::size_t cls;
    friend bool operator<(const block_key& a, const block_key& b) {
      return a.device != b.device ? a.device < b.device : a.cls < b.cls;
    }
  };
  struct cached_block {
    void* p;
    event ev;            // recorded at the free; done ⇒ no queued work uses p
    const void* stream;  // the stream tag of the free (nullptr: none)
  };
  using block_list = std::deque<cached_block>;

  // Rules 1–3 (the header comment); nullptr when the driver should be asked.
  void* take_cached(int device, std::size_t cls, const void* stream) {
    auto it = free_.find(block_key{device, cls});
    if (it == free_.end() || it->second.empty()) return nullptr;
    block_list& list = it->second;
    if (stream) {  // newest first: the most recently used memory
      for (auto pick = list.rbegin(); pick != list.rend(); ++pick)
        if (pick->stream == stream) {
          ++stats_.stream_reuses;
          return take(device, cls, list, std::next(pick).base());
        }
    }
    for (auto pick = list.begin(); pick != list.end(); ++pick)  // oldest first
      if (driver_.event_done(pick->ev)) return take(device, cls, list, pick);
    if (list.size() < std::max(max_pending_, max_pending_bytes_ / cls)) return nullptr;
    return take_oldest(device, cls);
  }

  // A block from the driver; out of memory, a pending block of the class (after its
  // event), else the whole cache released and one more try.
  void* fresh_block(int device, std::size_t cls) {
    if (void* p = driver_.malloc(cls)) {
      ++stats_.device_allocations;
      return p;
    }
    if (void* p = take_oldest(device, cls)) return p;
    release_cached_locked();
    void* p = driver_.malloc(cls);
    throw_if<error>(!p, "block cache: out of device memory for ", cls, " bytes (",
                    stats_.bytes_in_use, " bytes in use)");
    ++stats_.device_allocations;
    return p;
  }

  // The oldest cached block of the class after waiting for its event; nullptr if none.
  void* take_oldest(int device, std::size_t cls) {
    auto it = free_.find(block_key{device, cls});
    if (it == free_.end() || it->second.empty()) return nullptr;
    driver_.wait_event(it->second.front().ev);
    ++stats_.pending_waits;
    return take(device, cls, it->second, it->second.begin());
  }

  void* take(int device, std::size_t cls, block_list& list, typename block_list::iterator pick) {
    const cached_block b = *pick;
    list.erase(pick);
    spare_[device].push_back(b.ev);
    stats_.bytes_cached -= cls;
    ++stats_.cache_hits;
    return b.p;
  }

  event spare_event(int device) {
    auto& pool = spare_[device];
    if (pool.empty()) return driver_.create_event(device);
    const event ev = pool.back();
    pool.pop_back();
    return ev;
  }

  void release_cached_locked() {
    for (auto& [key, list] : free_) {
      for (const cached_block& b : list) {
        driver_.wait_event(b.ev);
        driver_.destroy_event(b.ev, key.device);
        driver_.free(b.p, key.device);
        ++stats_.device_frees;
      }
      list.clear();
    }
    for (auto& [device, pool] : spare_) {
      for (const event& ev : pool) driver_.destroy_event(ev, device);
      pool.clear();
    }
    stats_.bytes_cached = 0;
  }

  Driver driver_;
  mutable std::mutex mutex_;
  std::size_t max_pending_;
  std::size_t max_pending_bytes_;
  std::map<block_key, block_list> free_;
  std::unordered_map<void*, block_key> live_;
  std::map<int, std::vector<event>> spare_;  // per device: events no block carries
  block_cache_stats stats_;
};

}  // namespace ambiseg
