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
