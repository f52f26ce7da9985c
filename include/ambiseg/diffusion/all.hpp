// ambiseg/diffusion/all.hpp — the diffusion layer: schedules, predictions, weightings,
// timestep samplers, samplers (one-step and multistep), sampling grids, the gaussian_diffusion policies and diffusion_runner.
#pragma once

#include "ambiseg/diffusion/concepts.hpp"
#include "ambiseg/diffusion/schedules.hpp"
#include "ambiseg/diffusion/predictions.hpp"
#include "ambiseg/diffusion/weightings.hpp"
#include "ambiseg/diffusion/timesteps.hpp"
#include "ambiseg/diffusion/samplers.hpp"
#include "ambiseg/diffusion/sampling_grid.hpp"
#include "ambiseg/diffusion/multistep.hpp"
#include "ambiseg/diffusion/dpm_solver.hpp"
#include "ambiseg/diffusion/unipc.hpp"
#include "ambiseg/diffusion/diffusion.hpp"
#include "ambiseg/diffusion/runner.hpp"
#include "ambiseg/diffusion/distillation.hpp"
