// ambiseg/nn/all.hpp — the network: config, layers, blocks and the UNet.
#pragma once

#include "ambiseg/nn/arena.hpp"
#include "ambiseg/nn/attention_block.hpp"
#include "ambiseg/nn/config.hpp"
#include "ambiseg/nn/conv_stack.hpp"
#include "ambiseg/nn/layers.hpp"
#include "ambiseg/nn/prob_unet.hpp"
#include "ambiseg/nn/resblock.hpp"
#include "ambiseg/nn/time_embed.hpp"
#include "ambiseg/nn/unet.hpp"
