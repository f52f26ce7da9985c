// The diffusion policies on CUDA, instantiated once for every CUDA program of this build
// (host code: the kernels they launch are defined in src/cuda/diffusion.cu, or by the
// emulator in tests/cuda_emulator).
#include "ambiseg/models/diffusion_policies.hpp"

namespace ambiseg::models {
template std::unique_ptr<diffusion_model<cuda>> make_diffusion<cuda>(const policy_choice&);
}  // namespace ambiseg::models
