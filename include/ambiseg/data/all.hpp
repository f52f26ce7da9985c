// ambiseg/data/all.hpp — the data layer: loaders, crops, batches, the synthetic data set.
#pragma once

#include "ambiseg/io/image.hpp"
#include "ambiseg/io/pickle.hpp"

#include "ambiseg/data/batches.hpp"
#include "ambiseg/data/crops.hpp"
#include "ambiseg/data/dataset.hpp"
#include "ambiseg/data/folders.hpp"
#include "ambiseg/data/pickle_dataset.hpp"
#include "ambiseg/data/synthetic.hpp"
