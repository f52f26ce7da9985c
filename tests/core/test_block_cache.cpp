// The process-wide block cache behind tensor<T, cuda> (core/block_cache.hpp), on a fake
// driver: host memory for blocks and events that the test completes by hand, so the reuse
// rules run on any machine.
#include <catch2/catch.hpp>

#include <ambiseg/core/block_cache.hpp>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <map>
#include <set>
#include <vector>

using namespace ambiseg;

namespace {

struct fake_state {
  int device = 0;
  std::size_t budget = std::size_t(1) << 30;  // bytes the "device" may hold
  std::size_t held = 0;
  std::map<void*, std::size_t> blocks;
  std::vector<bool> events_done;  // by event id
  std::set<int> live_events;
  std::vector<int> waited;
  bool fail_record = false;
  // Blocks a test leaves with the fake device are its memory: returned here.
  ~fake_state() {
    for (auto& [p, bytes] : blocks) std::free(p);
  }
};

struct fake_driver {
  using event = int;
  std::shared_ptr<fake_state> s = std::make_shared<fake_state>();

  int current_device() { return s->device; }
  void* malloc(std::size_t bytes) {
    if (s->held + bytes > s->budget) return nullptr;
    void* p = std::malloc(bytes);
    s->held += bytes;
    s->blocks.emplace(p, bytes);
    return p;
  }
  void free(void* p, int) noexcept {
    auto it = s->blocks.find(p);
    if (it == s->blocks.end()) return;
    s->held -= it->second;
    s->blocks.erase(it);
    std::free(p);
  }
  event create_event(int) {
    s->events_done.push_back(false);
    const int id = static_cast<int>(s->events_done.size()) - 1;
    s->live_events.insert(id);
    return id;
  }
  bool record_event(event e, int) noexcept {
    if (s->fail_record) return false;
    s->events_done[static_cast<std::size_t>(e)] = false;  // pending until the test says so
    return true;
  }
  bool event_done(event e) noexcept { return s->events_done[static_cast<std::size_t>(e)]; }
  void wait_event(event e) noexcept {
    s->waited.push_back(e);
    s->events_done[static_cast<std::size_t>(e)] = true;
  }
  void destroy_event(event e, int) noexcept { s->live_events.erase(e); }
};

}  // namespace

TEST_CASE("block cache: size classes", "[core][block_cache]") {
  CHECK(block_size_class(0) == 0);
  CHECK(block_size_class(1) == 512);
  CHECK(block_size_class(513) == 1024);
  CHECK(block_size_class((1 << 20) + 1) == (1 << 20) + (1 << 18));
  CHECK(block_size_class((3 << 20) + 1) == (3 << 20) + (1 << 19));
  CHECK(block_size_class(512) == 512);
  CHECK(block_size_class(1 << 20) == (1 << 20));
  CHECK(block_size_class(3 << 20) == (3 << 20));
  CHECK(block_size_class(std::size_t(1) << 30) == (std::size_t(1) << 30));
  for (std::size_t bytes : {std::size_t(700), std::size_t(5'000'000), std::size_t(123'456'789)}) {
    const std::size_t cls = block_size_class(bytes);
    CHECK(cls >= bytes);
    CHECK(cls <= bytes + bytes / 4 + 512);  // at most 25% (or one granule) of waste
  }
}

TEST_CASE("block cache: a freed block is reused only after its event; pending ones are "
          "awaited only beyond the look-ahead bound", "[core][block_cache]") {
  fake_driver drv;
  auto st = drv.s;
  basic_block_cache<fake_driver> cache(drv, /*max_pending=*/2);

  void* a = cache.allocate(1000);  // class 1024
  void* b = cache.allocate(1000);
  CHECK(a != b);
  CHECK(cache.stats().device_allocations == 2);
  CHECK(cache.stats().bytes_in_use == 2048);

  cache.deallocate(a);  // event 0, pending
  cache.deallocate(b);  // event 1, pending
  CHECK(cache.stats().bytes_cached == 2048);
  CHECK(cache.stats().bytes_in_use == 0);

  // b's work is done, a's is not: the request takes b without waiting
  st->events_done[1] = true;
  void* c = cache.allocate(700);
  CHECK(c == b);
  CHECK(st->waited.empty());
  CHECK(cache.stats().cache_hits == 1);
  CHECK(cache.stats().device_allocations == 2);

  // only a is left, pending, and one pending block is under the bound of 2: a new block,
  // no wait (the host does not drain the device to recycle memory)
  void* d = cache.allocate(1024);
  CHECK(d != a);
  CHECK(st->waited.empty());
  CHECK(cache.stats().device_allocations == 3);

  // two pending blocks of the class reach the bound: the oldest (a) is awaited and reused
  cache.deallocate(d);  // event 2 (recycled from b's), pending
  void* e = cache.allocate(1024);
  CHECK(e == a);
  CHECK(st->waited.size() == 1);
  CHECK(cache.stats().pending_waits == 1);

  // another class never takes these blocks; events are recycled, not recreated
  cache.deallocate(c);
  void* f = cache.allocate(4096);
  CHECK(f != c);
  CHECK(cache.stats().device_allocations == 4);
  cache.deallocate(e);
  cache.deallocate(f);
  CHECK(st->live_events.size() == 4);  // one per cached block, spare ones reused
  CHECK(cache.live_blocks() == 0);

  cache.release_cached();
  CHECK(cache.stats().bytes_cached == 0);
  CHECK(st->blocks.empty());
  CHECK(st->live_events.empty());
  CHECK(cache.stats().device_frees == 4);
}

TEST_CASE("block cache: a block freed on a stream goes back to that stream at once, to "
          "other streams after its event", "[core][block_cache]") {
  fake_driver drv;
  auto st = drv.s;
  basic_block_cache<fake_driver> cache(drv);
  int stream_a = 0, stream_b = 0;  // any distinct addresses serve as tags
  void* p = cache.allocate(256, &stream_a);
  cache.deallocate(p, &stream_a);  // pending

  // another stream (or an untagged request) must not take it while it is pending
  void* q = cache.allocate(256, &stream_b);
  CHECK(q != p);
  void* r = cache.allocate(256);
  CHECK(r != p);
  // the same stream takes it without waiting: its later work runs after the earlier use
  void* s = cache.allocate(256, &stream_a);
  CHECK(s == p);
  CHECK(st->waited.empty());
  CHECK(cache.stats().stream_reuses == 1);

  // freed again on stream a, its event done: any request may take it
  cache.deallocate(s, &stream_a);
  std::fill(st->events_done.begin(), st->events_done.end(), true);
  CHECK(cache.allocate(256, &stream_b) == p);
  CHECK(cache.stats().stream_reuses == 1);
  cache.deallocate(p);
  cache.deallocate(q);
  cache.deallocate(r);
}

TEST_CASE("block cache: the look-ahead bound in bytes lets small blocks run further ahead",
          "[core][block_cache]") {
  fake_driver drv;
  auto st = drv.s;
  // 2 pending blocks at least, or 4 KiB of one class: 8 blocks of 512 B, 2 of 4 KiB
  basic_block_cache<fake_driver> cache(drv, /*max_pending=*/2, /*max_pending_bytes=*/4096);
  std::vector<void*> small;
  for (int i = 0; i < 8; ++i) small.push_back(cache.allocate(512));
  for (void* p : small) cache.deallocate(p);  // 8 pending
  void* more = cache.allocate(512);           // 8 = 4096 / 512 pending: the bound, await one
  CHECK(more == small.front());
  CHECK(st->waited.size() == 1);
  cache.deallocate(more);
  void* big_a = cache.allocate(4096);
  cache.deallocate(big_a);
  void* big_b = cache.allocate(4096);  // 1 pending < 2: a new block
  CHECK(big_b != big_a);
  CHECK(st->waited.size() == 1);
  cache.deallocate(big_b);
  CHECK(cache.allocate(4096) == big_a);  // 2 pending: the oldest is awaited
  CHECK(st->waited.size() == 2);
}

TEST_CASE("block cache: a stream's own block is found among others, the rest stay cached",
          "[core][block_cache]") {
  fake_driver drv;
  basic_block_cache<fake_driver> cache(drv);
  int stream_a = 0, stream_b = 0;
  void* a = cache.allocate(512, &stream_a);
  void* u = cache.allocate(512);
  void* b = cache.allocate(512, &stream_b);
  cache.deallocate(a, &stream_a);
  cache.deallocate(u);
  cache.deallocate(b, &stream_b);  // all three pending, a oldest
  CHECK(cache.allocate(512, &stream_b) == b);
  CHECK(cache.allocate(512, &stream_a) == a);
  CHECK(cache.stats().bytes_cached == 512);  // u is still cached
  CHECK(cache.stats().stream_reuses == 2);
  CHECK(cache.allocate(512, &stream_a) != u);  // pending and untagged: not for stream a
}

TEST_CASE("block cache: blocks are cached per device", "[core][block_cache]") {
  fake_driver drv;
  auto st = drv.s;
  basic_block_cache<fake_driver> cache(drv);
  void* a = cache.allocate(512);
  cache.deallocate(a);
  st->events_done[0] = true;
  st->device = 1;
  void* b = cache.allocate(512);
  CHECK(b != a);  // device 0's block is not handed to device 1
  st->device = 0;
  CHECK(cache.allocate(512) == a);
  cache.deallocate(b);
}

TEST_CASE("block cache: out of memory releases the cache and retries once, then throws",
          "[core][block_cache]") {
  fake_driver drv;
  auto st = drv.s;
  st->budget = 4096;
  basic_block_cache<fake_driver> cache(drv);
  void* a = cache.allocate(2048);
  void* b = cache.allocate(2048);
  cache.deallocate(a);  // cached, its event pending; the device is full
  void* c = cache.allocate(1024);  // fails, releases a (after its event), retries
  CHECK(c != nullptr);
  CHECK(st->waited == std::vector<int>{0});
  CHECK(cache.stats().device_frees == 1);
  CHECK(cache.stats().bytes_cached == 0);
  CHECK(st->held == 3072);
  CHECK_THROWS_WITH(cache.allocate(2048), Catch::Contains("out of device memory"));
  CHECK(cache.stats().bytes_in_use == 3072);  // the failed request changed nothing
  cache.deallocate(b);
  cache.deallocate(c);
}

TEST_CASE("block cache: a block whose event cannot be recorded is freed at once",
          "[core][block_cache]") {
  fake_driver drv;
  auto st = drv.s;
  basic_block_cache<fake_driver> cache(drv);
  void* a = cache.allocate(100);
  st->fail_record = true;
  cache.deallocate(a);
  CHECK(cache.stats().bytes_cached == 0);
  CHECK(cache.stats().device_frees == 1);
  CHECK(st->blocks.empty());
  cache.deallocate(reinterpret_cast<void*>(0x1234));  // not ours: ignored, no throw
  CHECK(cache.live_blocks() == 0);
}
