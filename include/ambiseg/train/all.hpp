// ambiseg/train/all.hpp — training and sampling (the `ambiseg` tool lives in apps/).
#pragma once

#include "ambiseg/train/policies.hpp"
#include "ambiseg/train/sampling.hpp"
#include "ambiseg/train/trainer.hpp"
