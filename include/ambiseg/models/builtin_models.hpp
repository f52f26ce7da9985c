// ambiseg/models/builtin_models.hpp — the models every program that includes this header
// can build by name (train/ includes it, so the trainer and the CLI know them all).
//
// Registering a model instantiates it on every device, most of a trainer test's compile
// time. A build that compiles src/models/builtin_models*.cpp once (this project's CMake
// does, for its own programs: AMBISEG_PRECOMPILED_MODELS_*) registers them there, in a
// function every including file calls at start-up (the call also keeps that object linked
// from its static library). Any other build registers them here, as header-only code.
#pragma once

#include "ambiseg/models/diffusion_segmenter.hpp"
#include "ambiseg/models/distilled_diffusion.hpp"
#include "ambiseg/models/phiseg.hpp"
#include "ambiseg/models/prob_unet.hpp"
#include "ambiseg/models/registry.hpp"

namespace ambiseg::models {

template <class... Devices>
bool register_builtin_models() {
  register_model<diffusion_segmenter, Devices...>();
  register_model<distilled_diffusion, Devices...>();
  register_model<prob_unet_aa, Devices...>();
  register_model<prob_unet_aa_mix, Devices...>();
  register_model<prob_unet_fc, Devices...>();
  register_model<prob_unet_fc_mix, Devices...>();
  register_model<phiseg, Devices...>();
  return true;
}

#if defined(AMBISEG_PRECOMPILED_MODELS_CPU)
bool register_builtin_models_cpu();
inline const bool builtin_models_registered_cpu = register_builtin_models_cpu();
#else
inline const bool builtin_models_registered_here_cpu = register_builtin_models<cpu>();
#endif

#if defined(AMBISEG_WITH_CUDA)
#if defined(AMBISEG_PRECOMPILED_MODELS_CUDA)
bool register_builtin_models_cuda();
inline const bool builtin_models_registered_cuda = register_builtin_models_cuda();
#else
inline const bool builtin_models_registered_here_cuda = register_builtin_models<cuda>();
#endif
#endif

}  // namespace ambiseg::models
