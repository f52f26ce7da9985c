// ambiseg/train/communicator.hpp — what data-parallel training needs of a group of
// processes (ranks), whatever carries it: MPI (train/mpi_communicator.hpp), NCCL on GPUs
// (train/nccl_communicator.hpp), or one process alone (solo_communicator, the default).
//
// Every call is collective: each rank of the group makes the same calls in the same order
// with the same counts. The trainer keeps that promise: each rank runs the same global
// batch loop, and each stop decision is agreed on (agree_stop) before it is acted upon.
//
//   allreduce_sum   data[i] ← Σ_ranks data[i], in place, on host memory
//   start_sum       the same, started in the background: finish() waits for every sum
//                   started since the last finish (gradient buckets, reduced while the next
//                   buckets are being prepared); progress() lets MPI advance them
//                   while the caller computes
//   agree_stop      rank 0's decision, on every rank
//   same_everywhere whether every rank holds this value (a hash of the weights)
//   gather_bytes    every rank's bytes, concatenated in rank order, on rank 0 (empty on
//                   the others): sampled masks spread over ranks, collected for scoring
//   broadcast_bytes rank 0's bytes on every rank (an NCCL bootstrap id)
//   abort           ends every rank of the group, with this rank's message printed first
//   on_device       the sums of device memory in a stream's order (device_sums), where the
//                   communicator offers them (NCCL); nullptr otherwise
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

namespace ambiseg::train {

// Sums of device memory, ordered with the work of a device stream and never waited for by
// the host (what a trainer on a GPU needs). `stream` is the device's stream handle
// (cudaStream_t) as an opaque pointer, so that this interface needs no device header.
//
//   start_sum  data[i] ← Σ_ranks scale·data[i], in place, once the work enqueued on
//              `stream` so far has run; `stream` itself goes on without waiting for it
//   finish     the work enqueued on `stream` from now on runs after every started sum
class device_sums {
 public:
  virtual ~device_sums() = default;
  virtual void start_sum(float* data, std::size_t n, float scale, void* stream) = 0;
  virtual void start_sum(double* data, std::size_t n, double scale, void* stream) = 0;
  virtual void finish(void* stream) = 0;
};

class communicator {
 public:
  virtual ~communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // A name for messages ("MPI, 4 ranks").
  virtual std::string describe() const = 0;

  virtual void allreduce_sum(std::span<double> data) = 0;
  virtual void start_sum(std::span<float> data) = 0;
  virtual void progress() = 0;
  virtual void finish() = 0;
  virtual bool agree_stop(bool rank0_says_stop) = 0;
  virtual bool same_everywhere(std::uint64_t value) = 0;
  virtual std::vector<std::uint8_t> gather_bytes(std::span<const std::uint8_t> mine) = 0;
  virtual std::vector<std::uint8_t> broadcast_bytes(std::span<const std::uint8_t> rank0s) = 0;
  virtual device_sums* on_device() { return nullptr; }
  // The bytes of user data this rank has sent to the sums so far (for the measures).
  virtual std::uint64_t bytes_reduced() const = 0;
  [[noreturn]] virtual void abort(const std::string& message, int exit_code) = 0;
};

// One process: every sum is the identity.
class solo_communicator final : public communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string describe() const override { return "one process"; }
  void allreduce_sum(std::span<double>) override {}
  void start_sum(std::span<float>) override {}
  void progress() override {}
  void finish() override {}
  bool agree_stop(bool rank0_says_stop) override { return rank0_says_stop; }
  bool same_everywhere(std::uint64_t) override { return true; }
  std::vector<std::uint8_t> gather_bytes(std::span<const std::uint8_t> mine) override {
    return {mine.begin(), mine.end()};
  }
  std::vector<std::uint8_t> broadcast_bytes(std::span<const std::uint8_t> rank0s) override {
    return {rank0s.begin(), rank0s.end()};
  }
  std::uint64_t bytes_reduced() const override { return 0; }
  [[noreturn]] void abort(const std::string& message, int exit_code) override {
    std::fputs((message + "\n").c_str(), stderr);
    std::exit(exit_code);
  }
};

}  // namespace ambiseg::train
