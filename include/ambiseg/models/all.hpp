// ambiseg/models/all.hpp — the segmentation models, their concept and their registry.
#pragma once

#include "ambiseg/models/model.hpp"
#include "ambiseg/models/registry.hpp"
#include "ambiseg/models/diffusion_policies.hpp"
#include "ambiseg/models/diffusion_segmenter.hpp"
#include "ambiseg/models/distilled_diffusion.hpp"
#include "ambiseg/models/prob_unet.hpp"
#include "ambiseg/models/builtin_models.hpp"
