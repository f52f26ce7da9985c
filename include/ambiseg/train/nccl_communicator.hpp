// ambiseg/train/nccl_communicator.hpp — train::communicator for data-parallel training on
// GPUs: one rank per GPU, gradients summed by NCCL on device memory.
//
// Bootstrap: rank 0 asks NCCL for a unique id and the host group (MPI under mpirun, or one
// process alone) hands it to every rank; each rank then joins the NCCL communicator on its
// GPU. The host group keeps what is not a sum of device memory: the stop decision, the
// weights' hash, gathering results, and ending every rank on an error (MPI_Abort; an NCCL
// kernel waiting for a dead rank would never return on its own, so NCCL is aborted first).
//
// Sums (device_sums): the training stream records an event where a bucket's gradients are
// final, the communication stream waits for it and runs ncclAllReduce there, so the rest of
// the backward pass keeps the training stream busy while the bucket travels. A share of
// the batch other than 1 is NCCL's pre-multiplied sum (ncclRedOpCreatePreMulSum: each rank
// scales its own input), so no kernel of ours scales gradients. finish() makes the training
// stream wait for the communication stream: the host never waits for a sum.
//
// NCCL is loaded when first needed (dlopen "libnccl.so.2"), not linked: the tool then runs
// on a machine without NCCL (one GPU needs none), and says what is missing when a
// multi-GPU run asks for it. NCCL functions already in the process (a program that links
// NCCL, or the CUDA emulator's one) are used first.
#pragma once

#if __has_include(<nccl.h>)
#define AMBISEG_NCCL_HEADERS 1

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "ambiseg/core/cuda_error.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/train/communicator.hpp"

namespace ambiseg::train {

// The NCCL entry points ambiseg calls, resolved once per process.
struct nccl_library {
  ncclResult_t (*get_version)(int*) = nullptr;
  ncclResult_t (*get_unique_id)(ncclUniqueId*) = nullptr;
  ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;
  ncclResult_t (*comm_abort)(ncclComm_t) = nullptr;
  ncclResult_t (*all_reduce)(const void*, void*, std::size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t,
                             cudaStream_t) = nullptr;
  ncclResult_t (*red_op_create_pre_mul_sum)(ncclRedOp_t*, void*, ncclDataType_t, ncclScalarResidence_t,
                                           ncclComm_t) = nullptr;
  ncclResult_t (*red_op_destroy)(ncclRedOp_t, ncclComm_t) = nullptr;
  const char* (*get_error_string)(ncclResult_t) = nullptr;
  const char* (*get_last_error)(ncclComm_t) = nullptr;
  std::string origin;  // where the functions came from, for describe()

  // Throws ambiseg::error naming what is missing when NCCL cannot be loaded.
  static const nccl_library& get() {
    static const nccl_library lib = load();
    return lib;
  }

 private:
  static nccl_library load() {
    void* handle = RTLD_DEFAULT;
    std::string origin = "linked into the program";
    if (!dlsym(RTLD_DEFAULT, "ncclAllReduce")) {
      handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
      if (!handle) {
        const char* why = dlerror();
        throw ambiseg::error(std::string("NCCL: cannot load libnccl.so.2 (") + (why ? why : "not found") +
                             "); training on several GPUs needs NCCL: install it (the CUDA toolkit's, or "
                             "`pip install nvidia-nccl-cu13`) and put its lib folder on LD_LIBRARY_PATH");
      }
      origin = "libnccl.so.2";
    }
    nccl_library lib;
    lib.origin = origin;
    resolve(handle, "ncclGetVersion", lib.get_version);
    resolve(handle, "ncclGetUniqueId", lib.get_unique_id);
    resolve(handle, "ncclCommInitRank", lib.comm_init_rank);
    resolve(handle, "ncclCommDestroy", lib.comm_destroy);
    resolve(handle, "ncclCommAbort", lib.comm_abort);
    resolve(handle, "ncclAllReduce", lib.all_reduce);
    resolve(handle, "ncclRedOpCreatePreMulSum", lib.red_op_create_pre_mul_sum);
    resolve(handle, "ncclRedOpDestroy", lib.red_op_destroy);
    resolve(handle, "ncclGetErrorString", lib.get_error_string);
    resolve(handle, "ncclGetLastError", lib.get_last_error);
    return lib;
  }
  template <class F>
  static void resolve(void* handle, const char* name, F& f) {
    void* p = dlsym(handle, name);
    throw_if<ambiseg::error>(!p, "NCCL: the library has no ", name, " (NCCL 2.11 or later is needed)");
    f = reinterpret_cast<F>(p);
  }
};

// The rank's index among the ranks on its node, as the launcher says (Open MPI, MPICH,
// Slurm, torchrun), or 0: the GPU a rank takes is this modulo the node's GPU count.
inline int launcher_local_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID", "LOCAL_RANK"})
    if (const char* s = std::getenv(v)) {
      char* end = nullptr;
      const long r = std::strtol(s, &end, 10);
      if (end != s && *end == '\0' && r >= 0 && r < (1 << 20)) return static_cast<int>(r);
    }
  return 0;
}

class nccl_communicator final : public communicator, public device_sums {
 public:
  // Collective over `host` (every rank constructs one, each on its own GPU `device`).
  // `host` must outlive this communicator.
  nccl_communicator(communicator& host, int device) : host_(host), nccl_(nccl_library::get()), device_(device) {
    cuda_check(cudaSetDevice(device_), "nccl_communicator: cudaSetDevice");
    ncclUniqueId id{};
    if (host_.rank() == 0) check(nccl_.get_unique_id(&id), "ncclGetUniqueId");
    const auto* raw = reinterpret_cast<const std::uint8_t*>(&id);
    const std::vector<std::uint8_t> shared = host_.broadcast_bytes({raw, sizeof id});
    throw_if<ambiseg::error>(shared.size() != sizeof id, "NCCL: the bootstrap id arrived with ", shared.size(),
                             " bytes instead of ", sizeof id);
    std::memcpy(&id, shared.data(), sizeof id);
    const ncclResult_t joined = nccl_.comm_init_rank(&comm_, host_.size(), id, host_.rank());
    if (joined != ncclSuccess)
      throw ambiseg::error("NCCL: ncclCommInitRank (rank " + std::to_string(host_.rank()) + " of " +
                           std::to_string(host_.size()) + ", GPU " + std::to_string(device_) +
                           "): " + nccl_.get_error_string(joined) + " (one rank per GPU: start at most as many " +
                           "ranks on a node as it has GPUs)");
    try {
      // Non-blocking: the legacy stream's copies and memsets must not wait for a sum in
      // flight, nor a sum for them; the order with the training stream is the events'.
      cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "nccl_communicator: cudaStreamCreate");
      cuda_check(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "nccl_communicator: cudaEventCreate");
      cuda_check(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming), "nccl_communicator: cudaEventCreate");
    } catch (...) {
      release();
      throw;
    }
    int version = 0;
    if (nccl_.get_version(&version) == ncclSuccess) version_ = version;
  }
  nccl_communicator(const nccl_communicator&) = delete;
  nccl_communicator& operator=(const nccl_communicator&) = delete;
  ~nccl_communicator() override {
    if (stream_) (void)cudaStreamSynchronize(stream_);
    release();
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  std::string describe() const override {
    return "NCCL " + version_text() + ", " + std::to_string(size()) + " GPUs (bootstrapped through " +
           host_.describe() + ")";
  }
  int device() const { return device_; }

  device_sums* on_device() override { return this; }
  void start_sum(float* data, std::size_t n, float scale, void* stream) override {
    all_reduce(data, n, ncclFloat, &scale, scale == 1.0f, stream);
    bytes_ += n * sizeof(float);
  }
  void start_sum(double* data, std::size_t n, double scale, void* stream) override {
    all_reduce(data, n, ncclDouble, &scale, scale == 1.0, stream);
    bytes_ += n * sizeof(double);
  }
  void finish(void* stream) override {
    cuda_check(cudaEventRecord(done_, stream_), "nccl_communicator::finish: cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream), done_, 0),
               "nccl_communicator::finish: cudaStreamWaitEvent");
  }

  // Host memory goes through the host group: these are rare and small.
  void allreduce_sum(std::span<double> data) override { host_.allreduce_sum(data); }
  void start_sum(std::span<float> data) override { host_.start_sum(data); }
  void progress() override { host_.progress(); }
  void finish() override { host_.finish(); }
  bool agree_stop(bool rank0_says_stop) override { return host_.agree_stop(rank0_says_stop); }
  bool same_everywhere(std::uint64_t value) override { return host_.same_everywhere(value); }
  std::vector<std::uint8_t> gather_bytes(std::span<const std::uint8_t> mine) override {
    return host_.gather_bytes(mine);
  }
  std::vector<std::uint8_t> broadcast_bytes(std::span<const std::uint8_t> rank0s) override {
    return host_.broadcast_bytes(rank0s);
  }
  std::uint64_t bytes_reduced() const override { return bytes_ + host_.bytes_reduced(); }
  [[noreturn]] void abort(const std::string& message, int exit_code) override {
    if (comm_) (void)nccl_.comm_abort(comm_);  // frees kernels waiting for a peer that is gone
    comm_ = nullptr;
    host_.abort(message, exit_code);
    std::exit(exit_code);  // host_.abort does not return; this satisfies [[noreturn]]
  }

 private:
  void all_reduce(void* data, std::size_t n, ncclDataType_t type, void* scale, bool plain_sum, void* stream) {
    if (n == 0) return;
    cuda_check(cudaEventRecord(ready_, static_cast<cudaStream_t>(stream)), "nccl_communicator: cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, ready_, 0), "nccl_communicator: cudaStreamWaitEvent");
    ncclRedOp_t op = ncclSum;
    if (!plain_sum) check(nccl_.red_op_create_pre_mul_sum(&op, scale, type, ncclScalarHostImmediate, comm_),
                          "ncclRedOpCreatePreMulSum");
    const ncclResult_t reduced = nccl_.all_reduce(data, data, n, type, op, comm_, stream_);
    // An operator may be destroyed once the last call given it has returned (NCCL's API).
    if (!plain_sum) (void)nccl_.red_op_destroy(op, comm_);
    check(reduced, "ncclAllReduce");
  }

  void check(ncclResult_t result, const char* what) const {
    if (result == ncclSuccess) [[likely]]
      return;
    std::string detail = nccl_.get_error_string(result);
    if (comm_)
      if (const char* last = nccl_.get_last_error(comm_); last && *last) detail += std::string(": ") + last;
    throw ambiseg::error(std::string("NCCL: ") + what + ": " + detail);
  }

  std::string version_text() const {
    if (version_ <= 0) return "(version unknown)";
    // NCCL ≥ 2.9 encodes major·10000 + minor·100 + patch.
    return std::to_string(version_ / 10000) + "." + std::to_string(version_ / 100 % 100) + "." +
           std::to_string(version_ % 100);
  }

  void release() noexcept {
    if (done_) (void)cudaEventDestroy(done_);
    if (ready_) (void)cudaEventDestroy(ready_);
    if (stream_) (void)cudaStreamDestroy(stream_);
    if (comm_) (void)nccl_.comm_destroy(comm_);
    done_ = ready_ = nullptr;
    stream_ = nullptr;
    comm_ = nullptr;
  }

  communicator& host_;
  const nccl_library& nccl_;
  int device_ = 0;
  int version_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;  // the sums run here
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
  std::uint64_t bytes_ = 0;
};

}  // namespace ambiseg::train

#endif  // __has_include(<nccl.h>)
