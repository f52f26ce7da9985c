// ambiseg/metrics/all.hpp — every metric header (SPEC §8).
#pragma once

#include "ambiseg/metrics/overlap.hpp"
#include "ambiseg/metrics/hungarian.hpp"
#include "ambiseg/metrics/ged.hpp"
#include "ambiseg/metrics/hm_iou.hpp"
#include "ambiseg/metrics/postprocess.hpp"
#include "ambiseg/metrics/evaluate.hpp"
