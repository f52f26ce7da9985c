// cuda_emulator/nccl.cpp — the NCCL subset ambiseg uses (train/nccl_communicator.hpp), on
// the CPU: communicators, the all-reduce with a sum or a pre-multiplied sum, errors.
//
// One rank: the sum over the ranks is the rank's own (pre-multiplied) input. Several ranks
// (a program under mpirun, built where MPI was found): emulated device memory is host
// memory, so each all-reduce is an MPI_Allreduce over the communicator's own duplicate of
// MPI_COMM_WORLD — each process plays one GPU, and a data-parallel GPU run is checked on a
// machine without one. Like the rest of the emulator it runs at once, in call order.
//
// What it checks that a GPU would show as a hang or garbage: buffers inside one live device
// allocation, a live stream, a communicator and operator that exist, a scalar type that
// matches the data, ranks and sizes that agree with the launcher's.
#include <nccl.h>

#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#if defined(AMBISEG_WITH_MPI)
#include <mpi.h>
#endif

#include "cuda_emulator/emulator.hpp"

struct ncclComm {
  int nranks = 1;
  int rank = 0;
  std::string last_error;
  std::map<int, std::pair<ncclDataType_t, double>> pre_mul;  // custom op → (type, scalar)
  int next_op = ncclNumOps;
#if defined(AMBISEG_WITH_MPI)
  MPI_Comm peers = MPI_COMM_NULL;
#endif
};

namespace {

std::mutex comms_mutex;
std::map<const ncclComm*, bool> comms;

bool live(ncclComm_t comm) {
  std::lock_guard lock(comms_mutex);
  return comms.count(comm) != 0;
}

ncclResult_t fail(ncclComm_t comm, ncclResult_t code, std::string detail) {
  if (comm && live(comm)) comm->last_error = std::move(detail);
  return code;
}

std::size_t element_size(ncclDataType_t type) {
  switch (type) {
    case ncclFloat: return sizeof(float);
    case ncclDouble: return sizeof(double);
    default: return 0;
  }
}

template <class T>
void scale_into(const void* src, void* dst, std::size_t count, double scalar) {
  const T* s = static_cast<const T*>(src);
  T* d = static_cast<T*>(dst);
  for (std::size_t i = 0; i < count; ++i) d[i] = static_cast<T>(s[i] * static_cast<T>(scalar));
}

}  // namespace

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
  if (!version) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  if (!id) return ncclInvalidArgument;
  std::memset(id, 0, sizeof *id);
  std::memcpy(id->internal, "ambiseg emulator", 16);
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  if (std::memcmp(id.internal, "ambiseg emulator", 16) != 0) return ncclInvalidArgument;
  auto* c = new ncclComm{};
  c->nranks = nranks;
  c->rank = rank;
  if (nranks > 1) {
#if defined(AMBISEG_WITH_MPI)
    int initialised = 0, world = 0, me = 0;
    MPI_Initialized(&initialised);
    if (initialised) {
      MPI_Comm_size(MPI_COMM_WORLD, &world);
      MPI_Comm_rank(MPI_COMM_WORLD, &me);
    }
    if (!initialised || world != nranks || me != rank) {
      delete c;
      return ncclInvalidUsage;
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &c->peers);
#else
    delete c;
    return ncclInvalidUsage;  // several ranks need MPI, which this emulator was built without
#endif
  }
  std::lock_guard lock(comms_mutex);
  comms[c] = true;
  *comm = c;
  return ncclSuccess;
}

static ncclResult_t release(ncclComm_t comm) {
  {
    std::lock_guard lock(comms_mutex);
    if (!comms.erase(comm)) return ncclInvalidArgument;
  }
#if defined(AMBISEG_WITH_MPI)
  if (comm->peers != MPI_COMM_NULL) MPI_Comm_free(&comm->peers);
#endif
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommDestroy(ncclComm_t comm) { return release(comm); }
ncclResult_t ncclCommAbort(ncclComm_t comm) { return release(comm); }

ncclResult_t ncclRedOpCreatePreMulSum(ncclRedOp_t* op, void* scalar, ncclDataType_t type,
                                      ncclScalarResidence_t residence, ncclComm_t comm) {
  if (!live(comm)) return ncclInvalidArgument;
  if (!op || !scalar) return fail(comm, ncclInvalidArgument, "ncclRedOpCreatePreMulSum: null pointer");
  if (residence != ncclScalarHostImmediate)
    return fail(comm, ncclInvalidUsage, "ncclRedOpCreatePreMulSum: the emulator reads host scalars only");
  double value = 0.0;
  if (type == ncclFloat) value = *static_cast<const float*>(scalar);
  else if (type == ncclDouble) value = *static_cast<const double*>(scalar);
  else return fail(comm, ncclInvalidArgument, "ncclRedOpCreatePreMulSum: float or double only");
  const int id = comm->next_op++;
  comm->pre_mul[id] = {type, value};
  *op = static_cast<ncclRedOp_t>(id);
  return ncclSuccess;
}

ncclResult_t ncclRedOpDestroy(ncclRedOp_t op, ncclComm_t comm) {
  if (!live(comm)) return ncclInvalidArgument;
  if (!comm->pre_mul.erase(static_cast<int>(op)))
    return fail(comm, ncclInvalidArgument, "ncclRedOpDestroy: no such operator");
  return ncclSuccess;
}

ncclResult_t ncclAllReduce(const void* send, void* recv, size_t count, ncclDataType_t type, ncclRedOp_t op,
                           ncclComm_t comm, cudaStream_t stream) {
  if (!live(comm)) return ncclInvalidArgument;
  const std::size_t size = element_size(type);
  if (size == 0) return fail(comm, ncclInvalidArgument, "ncclAllReduce: the emulator sums float or double");
  if (!ambiseg_emu::valid_stream(stream)) return fail(comm, ncclInvalidArgument, "ncclAllReduce: no such stream");
  for (const void* p : {send, static_cast<const void*>(recv)})
    if (auto problem = ambiseg_emu::device_range_problem(p, count * size))
      return fail(comm, ncclInvalidArgument, "ncclAllReduce: " + *problem);
  double scalar = 1.0;
  if (op != ncclSum) {
    auto it = comm->pre_mul.find(static_cast<int>(op));
    if (it == comm->pre_mul.end())
      return fail(comm, ncclInvalidArgument, "ncclAllReduce: the emulator knows ncclSum and pre-multiplied sums only");
    if (it->second.first != type)
      return fail(comm, ncclInvalidArgument, "ncclAllReduce: the operator's scalar type differs from the data's");
    scalar = it->second.second;
  }
  if (type == ncclFloat) scale_into<float>(send, recv, count, scalar);
  else scale_into<double>(send, recv, count, scalar);
#if defined(AMBISEG_WITH_MPI)
  if (comm->nranks > 1) {
    std::size_t done = 0;
    while (done < count) {  // MPI counts are ints
      const std::size_t n = std::min<std::size_t>(count - done, 1u << 30);
      if (MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(recv) + done * size, static_cast<int>(n),
                        type == ncclFloat ? MPI_FLOAT : MPI_DOUBLE, MPI_SUM, comm->peers) != MPI_SUCCESS)
        return fail(comm, ncclRemoteError, "ncclAllReduce: MPI_Allreduce failed");
      done += n;
    }
  }
#endif
  ambiseg_emu::note_work();
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error";
    case ncclSystemError: return "unhandled system error";
    case ncclInternalError: return "internal error";
    case ncclInvalidArgument: return "invalid argument";
    case ncclInvalidUsage: return "invalid usage";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t comm) {
  if (!comm || !live(comm)) return "";
  return comm->last_error.c_str();
}

}  // extern "C"
