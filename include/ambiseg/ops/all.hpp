// ambiseg/ops/all.hpp — every op of the networks (see docs/ops.md for the contract).
#pragma once

#include "ambiseg/ops/add.hpp"
#include "ambiseg/ops/attention.hpp"
#include "ambiseg/ops/avg_pool.hpp"
#include "ambiseg/ops/batch_norm.hpp"
#include "ambiseg/ops/concat.hpp"
#include "ambiseg/ops/conv2d.hpp"
#include "ambiseg/ops/gaussian_latent.hpp"
#include "ambiseg/ops/group_norm.hpp"
#include "ambiseg/ops/linear.hpp"
#include "ambiseg/ops/relu.hpp"
#include "ambiseg/ops/sigmoid_cross_entropy.hpp"
#include "ambiseg/ops/silu.hpp"
#include "ambiseg/ops/spatial_mean.hpp"
#include "ambiseg/ops/tanh.hpp"
#include "ambiseg/ops/timestep_embedding.hpp"
#include "ambiseg/ops/upsample.hpp"
