// ambiseg — diffusion models for ambiguous image segmentation (umbrella header).
#pragma once

#include "ambiseg/version.hpp"

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/shape.hpp"
#include "ambiseg/core/device.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/parallel.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/core/config.hpp"
#include "ambiseg/core/parameters.hpp"

#include "ambiseg/diffusion/all.hpp"
#include "ambiseg/metrics/all.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/optim/adamw.hpp"
#include "ambiseg/optim/clip.hpp"
#include "ambiseg/optim/lr_schedule.hpp"
#include "ambiseg/optim/ema.hpp"
#include "ambiseg/ops/all.hpp"
#include "ambiseg/nn/all.hpp"
#include "ambiseg/data/all.hpp"
#include "ambiseg/train/all.hpp"
