// ambiseg/metrics/all.hpp — every metric header (SPEC §8).
#pragma once

#include "ambiseg/metrics/overlap.hpp"
#include "ambiseg/metrics/hungarian.hpp"
#include "ambiseg/metrics/ged.hpp"
#include "ambiseg/metrics/hm_iou.hpp"
#include "ambiseg/metrics/postprocess.hpp"
#include "ambiseg/metrics/collective_insight.hpp"
#include "ambiseg/metrics/uncertainty_ncc.hpp"
#include "ambiseg/metrics/qubiq.hpp"
#include "ambiseg/metrics/evaluate.hpp"
