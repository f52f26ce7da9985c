// ambiseg/train/mpi_communicator.hpp — train::communicator over MPI (any MPI-3 library;
// CI uses Debian's Open MPI). Only what includes this header needs <mpi.h>: the library
// stays usable without MPI, and the build defines AMBISEG_WITH_MPI where it found one.
//
// mpi_session initialises MPI for the life of a program (main()), and only when the
// process was started by a launcher (mpirun/srun set the PMI/PMIx variables): a plain
// `ambiseg train` never touches MPI. MPI_THREAD_FUNNELED: only the main thread calls MPI;
// OpenMP's threads compute.
//
// Sums: MPI_Iallreduce (MPI_SUM) on each gradient bucket as it is handed over, MPI_Waitall
// in finish(). Every rank ends with the same bits: MPI's reduction algorithms combine
// partial sums pairwise or along a ring and broadcast the result, and IEEE addition is
// commutative, so no rank's parameters drift from another's (the trainer checks a hash of
// the weights in debug builds and the tests do too).
#pragma once

#include <mpi.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/train/communicator.hpp"

namespace ambiseg::train {

inline void mpi_check(int code, const char* what) {
  if (code == MPI_SUCCESS) [[likely]]
    return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw ambiseg::error(std::string("MPI: ") + what + ": " + std::string(text, static_cast<std::size_t>(length)));
}

// Whether a launcher started this process as one rank of several.
inline bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

class mpi_session {
 public:
  // argc/argv as main() received them (MPI may read and remove its own arguments).
  mpi_session(int* argc, char*** argv) {
    if (!launched_by_mpi()) return;
    int provided = 0;
    mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    active_ = true;
    // Errors come back as codes (mpi_check turns them into exceptions) instead of aborting
    // inside MPI without a word about what failed.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  mpi_session(const mpi_session&) = delete;
  mpi_session& operator=(const mpi_session&) = delete;
  ~mpi_session() {
    if (active_) MPI_Finalize();
  }
  bool active() const { return active_; }

 private:
  bool active_ = false;
};

class mpi_communicator final : public communicator {
 public:
  explicit mpi_communicator(MPI_Comm comm = MPI_COMM_WORLD) : comm_(comm) {
    mpi_check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    mpi_check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }
  mpi_communicator(const mpi_communicator&) = delete;
  mpi_communicator& operator=(const mpi_communicator&) = delete;
  ~mpi_communicator() override {
    if (!pending_.empty()) MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override { return "MPI, " + std::to_string(size_) + " ranks"; }

  void allreduce_sum(std::span<double> data) override {
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, data.data(), count_of(data.size()), MPI_DOUBLE, MPI_SUM, comm_),
              "MPI_Allreduce");
    bytes_ += data.size_bytes();
  }
  void start_sum(std::span<float> data) override {
    MPI_Request request = MPI_REQUEST_NULL;
    mpi_check(MPI_Iallreduce(MPI_IN_PLACE, data.data(), count_of(data.size()), MPI_FLOAT, MPI_SUM, comm_, &request),
              "MPI_Iallreduce");
    pending_.push_back(request);
    bytes_ += data.size_bytes();
  }
  void progress() override {
    if (pending_.empty()) return;
    int done = 0;
    mpi_check(MPI_Testall(static_cast<int>(pending_.size()), pending_.data(), &done, MPI_STATUSES_IGNORE),
              "MPI_Testall (gradient sums)");
  }
  void finish() override {
    if (pending_.empty()) return;
    const int code = MPI_Waitall(static_cast<int>(pending_.size()), pending_.data(), MPI_STATUSES_IGNORE);
    pending_.clear();
    mpi_check(code, "MPI_Waitall (gradient sums)");
  }
  bool agree_stop(bool rank0_says_stop) override {
    int flag = rank_ == 0 && rank0_says_stop ? 1 : 0;
    mpi_check(MPI_Bcast(&flag, 1, MPI_INT, 0, comm_), "MPI_Bcast (stop)");
    return flag != 0;
  }
  bool same_everywhere(std::uint64_t value) override {
    std::uint64_t low = value, high = value;
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, &low, 1, MPI_UINT64_T, MPI_MIN, comm_), "MPI_Allreduce (min)");
    mpi_check(MPI_Allreduce(MPI_IN_PLACE, &high, 1, MPI_UINT64_T, MPI_MAX, comm_), "MPI_Allreduce (max)");
    return low == high;
  }
  std::vector<std::uint8_t> gather_bytes(std::span<const std::uint8_t> mine) override {
    long long own = static_cast<long long>(mine.size());
    std::vector<long long> sizes(rank_ == 0 ? static_cast<std::size_t>(size_) : 0);
    mpi_check(MPI_Gather(&own, 1, MPI_LONG_LONG, sizes.data(), 1, MPI_LONG_LONG, 0, comm_), "MPI_Gather (sizes)");
    std::vector<int> counts, offsets;
    long long total = 0;
    for (long long n : sizes) {
      offsets.push_back(static_cast<int>(std::min<long long>(total, INT32_MAX)));
      counts.push_back(static_cast<int>(std::min<long long>(n, INT32_MAX)));
      total += n;
    }
    // MPI counts are ints: rank 0 refuses more than 2 GiB, and says so on every rank (the
    // others would otherwise wait in the Gatherv below).
    int too_big = rank_ == 0 && total > INT32_MAX ? 1 : 0;
    mpi_check(MPI_Bcast(&too_big, 1, MPI_INT, 0, comm_), "MPI_Bcast (gather size)");
    throw_if<value_error>(too_big != 0, "MPI: the gathered results exceed 2 GiB; evaluate fewer images per run");
    std::vector<std::uint8_t> all(static_cast<std::size_t>(total));
    mpi_check(MPI_Gatherv(mine.data(), static_cast<int>(own), MPI_BYTE, all.data(), counts.data(), offsets.data(),
                          MPI_BYTE, 0, comm_),
              "MPI_Gatherv");
    return all;
  }
  std::vector<std::uint8_t> broadcast_bytes(std::span<const std::uint8_t> rank0s) override {
    long long n = rank_ == 0 ? static_cast<long long>(rank0s.size()) : 0;
    mpi_check(MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, comm_), "MPI_Bcast (size)");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(n));
    if (rank_ == 0) std::copy(rank0s.begin(), rank0s.end(), bytes.begin());
    mpi_check(MPI_Bcast(bytes.data(), count_of(bytes.size()), MPI_BYTE, 0, comm_), "MPI_Bcast (bytes)");
    return bytes;
  }
  std::uint64_t bytes_reduced() const override { return bytes_; }
  [[noreturn]] void abort(const std::string& message, int exit_code) override {
    std::fputs((message + "\n").c_str(), stderr);
    std::fflush(stderr);
    MPI_Abort(comm_, exit_code);
    std::exit(exit_code);  // MPI_Abort does not return; this satisfies [[noreturn]]
  }

 private:
  static int count_of(std::size_t n) {
    throw_if<value_error>(n > static_cast<std::size_t>(INT32_MAX), "MPI: ", n, " elements exceed one message");
    return static_cast<int>(n);
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
  std::vector<MPI_Request> pending_;
  std::uint64_t bytes_ = 0;
};

}  // namespace ambiseg::train
