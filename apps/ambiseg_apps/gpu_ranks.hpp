// ambiseg_apps/gpu_ranks.hpp — the ranks of an mpirun on GPUs: which GPU each rank takes,
// and the NCCL group that sums their gradients (train/nccl_communicator.hpp).
//
//   gpu_for_rank     for one run: CUDA contexts use GPU (local rank mod the node's GPU
//                    count), so the ranks on a node spread over its GPUs
//   device_group<D>  NCCL over the host group's ranks when D is a GPU and there are several
//                    ranks; nothing otherwise (the CPU sums over MPI itself)
#pragma once

#include <memory>
#include <string>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/train/communicator.hpp"
#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/core/cuda_context.hpp"
#include "ambiseg/train/nccl_communicator.hpp"
#endif

namespace ambiseg::apps {

class gpu_for_rank {
 public:
  gpu_for_rank([[maybe_unused]] const std::string& device, [[maybe_unused]] const train::communicator* group) {
#if defined(AMBISEG_WITH_CUDA) && defined(AMBISEG_NCCL_HEADERS)
    if (device != "cuda" || !group || group->size() < 2) return;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count < 1) return;  // the context will say why
    saved_ = cuda_context_defaults().device;
    cuda_context_defaults().device = train::launcher_local_rank() % count;
#endif
  }
  gpu_for_rank(const gpu_for_rank&) = delete;
  gpu_for_rank& operator=(const gpu_for_rank&) = delete;
  ~gpu_for_rank() {
#if defined(AMBISEG_WITH_CUDA)
    if (saved_ >= 0) cuda_context_defaults().device = saved_;
#endif
  }

 private:
  int saved_ = -1;
};

template <class D>
std::unique_ptr<train::communicator> device_group([[maybe_unused]] train::communicator* group) {
  if constexpr (std::same_as<D, cpu>) {
    return nullptr;
  } else {
    if (!group || group->size() < 2) return nullptr;
#if defined(AMBISEG_NCCL_HEADERS)
    return std::make_unique<train::nccl_communicator>(*group, cuda_context_defaults().device);
#else
    throw value_error("--device cuda under mpirun: this ambiseg was built without NCCL's header (nccl.h), so it "
                      "cannot sum gradients over GPUs; train on one GPU, or rebuild where NCCL is installed");
#endif
  }
}

}  // namespace ambiseg::apps
