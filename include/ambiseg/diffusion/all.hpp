// ambiseg/diffusion/all.hpp — the diffusion layer: schedules, predictions, weightings,
// timestep samplers, samplers, the gaussian_diffusion policies and diffusion_runner.
#pragma once

#include "ambiseg/diffusion/concepts.hpp"
#include "ambiseg/diffusion/schedules.hpp"
#include "ambiseg/diffusion/predictions.hpp"
#include "ambiseg/diffusion/weightings.hpp"
#include "ambiseg/diffusion/timesteps.hpp"
#include "ambiseg/diffusion/samplers.hpp"
#include "ambiseg/diffusion/diffusion.hpp"
#include "ambiseg/diffusion/runner.hpp"
