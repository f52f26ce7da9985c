// ambiseg/train/all.hpp — training and sampling any registered model (the `ambiseg` tool
// lives in apps/).
#pragma once

#include "ambiseg/train/checkpoint.hpp"
#include "ambiseg/train/config.hpp"
#include "ambiseg/train/sampling.hpp"
#include "ambiseg/train/trainer.hpp"
