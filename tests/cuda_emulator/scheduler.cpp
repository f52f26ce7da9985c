// cuda_emulator/scheduler.cpp — runs a kernel grid on the CPU: blocks one after another,
// the threads of a block as fibers that switch only at barriers.
//
// Fibers: a thread runs on a stack slot of its own (slots are mapped once for the largest
// block seen and reused by every later launch, with a guard page below each). A slot is
// taken when the thread starts and given back when it finishes, so the threads of a kernel
// without barriers all run on the same, cache-hot slot; a thread suspended at a barrier
// keeps its slot. On x86-64 a switch saves and restores the callee-saved registers and the
// stack pointer (a few instructions; glibc's swapcontext also makes a signal-mask system
// call per switch, which would dominate a launch of a million threads). It does not save
// MXCSR and the x87 control word (serialising, a third of a switch's cost): kernels never
// change the floating-point environment. Elsewhere the fibers use makecontext/swapcontext.
//
// A thread runs until it finishes or reaches a barrier. When no thread can run, the
// scheduler completes what can complete — a warp whose 32 lanes all wait in a shuffle (the
// exchange is computed for all lanes at once), else the block barrier when every thread
// waits at it — or reports why nothing can (emulation_error naming the kernel).
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <exception>
#include <mutex>
#include <sstream>
#include <vector>

#include "cuda_emulator/emulator.hpp"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

uint3 threadIdx{0, 0, 0};
uint3 blockIdx{0, 0, 0};
dim3 blockDim{1, 1, 1};
dim3 gridDim{1, 1, 1};

namespace ambiseg_emu {

void record_launch_error(cudaError_t status, std::string detail);  // runtime.cpp

namespace {

enum class thread_state : unsigned char { fresh, ready, block_barrier, warp_barrier, done };

struct fiber_thread {
  void* sp = nullptr;  // saved stack pointer while switched out (x86-64)
#if !defined(__x86_64__)
  ucontext_t context;
#endif
  thread_state state = thread_state::fresh;
  std::size_t slot = 0;  // the stack slot while started
  uint3 index{0, 0, 0};
  int lane = 0;  // linear index in the block, modulo 32
  // The pending shuffle: published value, source lane (−1: own), mask, intrinsic name.
  std::uint64_t shuffle_value = 0, shuffle_result = 0;
  int shuffle_source = -1;
  const char* shuffle_what = "";
};

constexpr std::size_t stack_bytes = 128 * 1024;

struct scheduler_state {
  std::mutex launch_mutex;  // one grid at a time (the built-ins and statics are global)
  char* stacks = nullptr;   // mmap'd: per thread a guard page, then its stack
  std::size_t stack_slots = 0;
  std::size_t slot_bytes = 0;
  std::vector<fiber_thread> threads;
  std::vector<std::size_t> free_slots;
  void* main_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t main_context;
#endif
  fiber_thread* current = nullptr;
  kernel_body body{};
  const char* kernel = "";
  std::exception_ptr failure;
};

scheduler_state& state() {
  static scheduler_state s;
  return s;
}

}  // namespace
}  // namespace ambiseg_emu

extern "C" [[noreturn]] void ambiseg_emu_fiber_main(ambiseg_emu::fiber_thread* t);

#if defined(__x86_64__)
// void ambiseg_emu_switch(void** save_sp, void* load_sp): saves the callee-saved registers
// on the current stack, stores its stack pointer in *save_sp, loads load_sp and restores
// the registers from there. ambiseg_emu_fiber_entry is where a fresh fiber's first switch
// "returns" to: r12 holds its fiber_thread.
extern "C" void ambiseg_emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl ambiseg_emu_switch
    .type ambiseg_emu_switch, @function
ambiseg_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size ambiseg_emu_switch, .-ambiseg_emu_switch

    .globl ambiseg_emu_fiber_entry
    .type ambiseg_emu_fiber_entry, @function
ambiseg_emu_fiber_entry:
    movq %r12, %rdi
    andq $-16, %rsp
    call ambiseg_emu_fiber_main@PLT
    ud2
    .size ambiseg_emu_fiber_entry, .-ambiseg_emu_fiber_entry
)");
extern "C" void ambiseg_emu_fiber_entry();
#endif

namespace ambiseg_emu {
namespace {

void switch_to_fiber(scheduler_state& s, fiber_thread& t) {
  s.current = &t;
  threadIdx = t.index;
#if defined(__x86_64__)
  ambiseg_emu_switch(&s.main_sp, t.sp);
#else
  swapcontext(&s.main_context, &t.context);
#endif
  s.current = nullptr;
}

void switch_to_scheduler(scheduler_state& s, fiber_thread& t) {
#if defined(__x86_64__)
  ambiseg_emu_switch(&t.sp, s.main_sp);
#else
  swapcontext(&t.context, &s.main_context);
#endif
}

void reserve_stacks(scheduler_state& s, std::size_t count) {
  if (count <= s.stack_slots) return;
  const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  const std::size_t slot = stack_bytes + page;
  void* mem = mmap(nullptr, slot * count, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) throw emulation_error("CUDA emulator: cannot map fiber stacks");
  for (std::size_t i = 0; i < count; ++i)  // overflowing a stack faults instead of corrupting
    mprotect(static_cast<char*>(mem) + i * slot, page, PROT_NONE);
  if (s.stacks) munmap(s.stacks, s.slot_bytes * s.stack_slots);
  s.stacks = static_cast<char*>(mem);
  s.stack_slots = count;
  s.slot_bytes = slot;
}

// Prepares thread t to start the kernel from the beginning on stack slot `slot`.
void start_fiber(scheduler_state& s, fiber_thread& t, std::size_t slot) {
  t.state = thread_state::ready;
  t.slot = slot;
  char* top = s.stacks + (slot + 1) * s.slot_bytes;  // 16-byte aligned (page aligned)
#if defined(__x86_64__)
  auto* frame = reinterpret_cast<std::uint64_t*>(top - 16) - 7;
  frame[0] = 0;                                    // r15
  frame[1] = 0;                                    // r14
  frame[2] = 0;                                    // r13
  frame[3] = reinterpret_cast<std::uint64_t>(&t);  // r12: the fiber's argument
  frame[4] = 0;                                    // rbx
  frame[5] = 0;                                    // rbp
  frame[6] = reinterpret_cast<std::uint64_t>(&ambiseg_emu_fiber_entry);  // return address
  t.sp = frame;
#else
  getcontext(&t.context);
  t.context.uc_stack.ss_sp = top - stack_bytes;
  t.context.uc_stack.ss_size = stack_bytes;
  t.context.uc_link = nullptr;
  makecontext(&t.context, reinterpret_cast<void (*)()>(&ambiseg_emu_fiber_main), 1, &t);
#endif
}

std::string kernel_where(const scheduler_state& s) {
  std::ostringstream o;
  o << "CUDA emulator: kernel " << s.kernel << ", block (" << blockIdx.x << "," << blockIdx.y
    << "," << blockIdx.z << ") of " << blockDim.x * blockDim.y * blockDim.z << " threads: ";
  return o.str();
}

std::string lanes_text(const std::vector<int>& lanes) {
  std::ostringstream o;
  for (std::size_t i = 0; i < lanes.size() && i < 8; ++i) o << (i ? "," : "") << lanes[i];
  if (lanes.size() > 8) o << ",… (" << lanes.size() << ")";
  return o.str();
}

// Completes the warps whose lanes all wait in a shuffle; throws for a warp that can never
// complete. Returns whether any warp was released.
bool release_warps(scheduler_state& s) {
  const std::size_t n = s.threads.size();
  bool released = false;
  for (std::size_t first = 0; first < n; first += 32) {
    const std::size_t last = std::min(n, first + 32);
    int waiting_count = 0, exited_count = 0;
    for (std::size_t i = first; i < last; ++i) {
      const thread_state st = s.threads[i].state;
      waiting_count += st == thread_state::warp_barrier;
      exited_count += st == thread_state::done;
    }
    if (waiting_count == 0) continue;
    if (waiting_count == 32) {  // the common case: every lane is in the exchange
      std::uint64_t results[32];
      for (std::size_t i = first; i < last; ++i) {
        const fiber_thread& t = s.threads[i];
        const int src = t.shuffle_source;
        results[i - first] = src < 0 ? t.shuffle_value
                                     : s.threads[first + static_cast<std::size_t>(src)].shuffle_value;
      }
      for (std::size_t i = first; i < last; ++i) {
        s.threads[i].shuffle_result = results[i - first];
        s.threads[i].state = thread_state::ready;
      }
      released = true;
      continue;
    }
    std::vector<int> waiting, exited;  // for the messages
    for (std::size_t i = first; i < last; ++i) {
      const thread_state st = s.threads[i].state;
      if (st == thread_state::warp_barrier) waiting.push_back(static_cast<int>(i - first));
      if (st == thread_state::done) exited.push_back(static_cast<int>(i - first));
    }
    const char* what = s.threads[first + static_cast<std::size_t>(waiting[0])].shuffle_what;
    if (last - first < 32)
      throw emulation_error(kernel_where(s) + what + " with mask 0xffffffff in warp " +
                            std::to_string(first / 32) + ", which has only " +
                            std::to_string(last - first) +
                            " threads (the block size is not a multiple of 32)");
    if (exited_count > 0)
      throw emulation_error(kernel_where(s) + "lanes " + lanes_text(waiting) + " of warp " +
                            std::to_string(first / 32) + " wait in " + what +
                            " with mask 0xffffffff, but lanes " + lanes_text(exited) +
                            " have exited");
    // Otherwise some lanes wait at __syncthreads: a divergent warp, reported below if
    // nothing else can move.
  }
  return released;
}

void run_block(scheduler_state& s) {
  const std::size_t n = s.threads.size();
  for (fiber_thread& t : s.threads) t.state = thread_state::fresh;
  s.free_slots.clear();
  std::size_t next_slot = 0;
  for (;;) {
    std::size_t done = 0;
    for (std::size_t i = 0; i < n; ++i) {
      fiber_thread& t = s.threads[i];
      if (t.state == thread_state::fresh) {
        std::size_t slot = next_slot;
        if (s.free_slots.empty())
          ++next_slot;
        else
          slot = s.free_slots.back(), s.free_slots.pop_back();
        start_fiber(s, t, slot);
      }
      if (t.state == thread_state::ready) {
        switch_to_fiber(s, t);
        if (t.state == thread_state::done) s.free_slots.push_back(t.slot);
      }
      if (s.failure) std::rethrow_exception(std::exchange(s.failure, nullptr));
      if (t.state == thread_state::done) ++done;
    }
    if (done == n) return;
    if (release_warps(s)) continue;
    std::size_t at_barrier = 0;
    for (const fiber_thread& t : s.threads) at_barrier += t.state == thread_state::block_barrier;
    if (at_barrier + done != n || done != 0) {  // nothing can complete: say why
      std::vector<int> at_block, in_shuffle, exited;
      for (std::size_t i = 0; i < n; ++i) {
        const thread_state st = s.threads[i].state;
        (st == thread_state::block_barrier ? at_block
         : st == thread_state::warp_barrier ? in_shuffle
                                             : exited)
            .push_back(static_cast<int>(i));
      }
      if (!in_shuffle.empty())
        throw emulation_error(kernel_where(s) + "threads " + lanes_text(in_shuffle) +
                              " wait in a warp shuffle while threads " + lanes_text(at_block) +
                              " of the same warps wait at __syncthreads (divergent warp)");
      throw emulation_error(kernel_where(s) + "threads " + lanes_text(at_block) +
                            " wait at __syncthreads, but threads " + lanes_text(exited) +
                            " have exited (the barrier can never complete)");
    }
    for (fiber_thread& t : s.threads) t.state = thread_state::ready;
  }
}

fiber_thread& current_thread(const char* what) {
  scheduler_state& s = state();
  if (!s.current)
    throw emulation_error(std::string("CUDA emulator: ") + what + " called outside a kernel");
  return *s.current;
}

bool valid_configuration(dim3 grid, dim3 block) {
  const std::uint64_t threads = std::uint64_t(block.x) * block.y * block.z;
  return grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u &&
         grid.y <= 65535 && grid.z <= 65535 && block.x >= 1 && block.y >= 1 && block.z >= 1 &&
         block.x <= 1024 && block.y <= 1024 && block.z <= 64 && threads <= 1024;
}

}  // namespace

void run_grid(const char* kernel, dim3 grid, dim3 block, std::size_t shared_bytes,
              cudaStream_t stream, kernel_body body) {
  note_work();
  if (!valid_configuration(grid, block)) {
    record_launch_error(cudaErrorInvalidConfiguration,
                        std::string(kernel) + ": grid (" + std::to_string(grid.x) + "," +
                            std::to_string(grid.y) + "," + std::to_string(grid.z) +
                            "), block (" + std::to_string(block.x) + "," +
                            std::to_string(block.y) + "," + std::to_string(block.z) + ")");
    return;
  }
  if (!valid_stream(stream)) {
    record_launch_error(cudaErrorInvalidResourceHandle,
                        std::string(kernel) + ": launched on a stream that does not exist");
    return;
  }
  if (shared_bytes != 0)
    throw emulation_error(std::string("CUDA emulator: kernel ") + kernel +
                          ": dynamic shared memory is not emulated");
  scheduler_state& s = state();
  std::lock_guard lock(s.launch_mutex);
  const std::size_t threads = std::size_t(block.x) * block.y * block.z;
  reserve_stacks(s, threads);
  s.threads.assign(threads, fiber_thread{});
  for (unsigned z = 0, i = 0; z < block.z; ++z)
    for (unsigned y = 0; y < block.y; ++y)
      for (unsigned x = 0; x < block.x; ++x, ++i) {
        s.threads[i].index = uint3{x, y, z};
        s.threads[i].lane = static_cast<int>(i % 32);
      }
  s.kernel = kernel;
  s.body = body;
  s.failure = nullptr;
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = uint3{bx, by, bz};
        run_block(s);
      }
}

void sync_block() {
  fiber_thread& t = current_thread("__syncthreads");
  t.state = thread_state::block_barrier;
  switch_to_scheduler(state(), t);
}

std::uint64_t warp_exchange(unsigned mask, std::uint64_t bits, int source, const char* what) {
  fiber_thread& t = current_thread(what);
  if (mask != 0xffffffffu) {
    std::ostringstream o;
    o << kernel_where(state()) << what << " with mask 0x" << std::hex << mask
      << ": the emulator (and every ambiseg kernel) uses full-warp masks only";
    throw emulation_error(o.str());
  }
  t.shuffle_value = bits;
  t.shuffle_source = source;
  t.shuffle_what = what;
  t.state = thread_state::warp_barrier;
  switch_to_scheduler(state(), t);
  return t.shuffle_result;
}

int lane_id() { return current_thread("a warp intrinsic").lane; }

}  // namespace ambiseg_emu

// Runs one thread of the kernel, then hands control back for good (the stack is reused by
// the next launch). An exception escaping the kernel is carried to run_grid's caller.
extern "C" [[noreturn]] void ambiseg_emu_fiber_main(ambiseg_emu::fiber_thread* t) {
  auto& s = ambiseg_emu::state();
  try {
    s.body.run(s.body.ctx);
  } catch (...) {
    if (!s.failure) s.failure = std::current_exception();
  }
  t->state = ambiseg_emu::thread_state::done;
  ambiseg_emu::switch_to_scheduler(s, *t);
  __builtin_unreachable();
}
