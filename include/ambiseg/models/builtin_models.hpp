// ambiseg/models/builtin_models.hpp — the models every program that includes this header
// can build by name (train/ includes it, so the trainer and the CLI know them all).
#pragma once

#include "ambiseg/models/diffusion_segmenter.hpp"
#include "ambiseg/models/registry.hpp"

namespace ambiseg::models {

inline const bool diffusion_segmenter_registered = register_model<diffusion_segmenter>();

}  // namespace ambiseg::models
