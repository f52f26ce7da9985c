// ambiseg/train/all.hpp — training, sampling, the `ambiseg` command line and its pictures.
#pragma once

#include "ambiseg/train/cli.hpp"
#include "ambiseg/train/commands.hpp"
#include "ambiseg/train/commands_eval.hpp"
#include "ambiseg/train/data_source.hpp"
#include "ambiseg/train/inputs.hpp"
#include "ambiseg/train/plot.hpp"
#include "ambiseg/train/policies.hpp"
#include "ambiseg/train/sampling.hpp"
#include "ambiseg/train/trainer.hpp"
