// ambiseg/metrics/eval_cli.hpp — the logic of the `ambiseg-eval` tool, testable in-process.
//
//   ambiseg-eval --samples S.npy --annotations A.npy [--pp R] [--unbiased] [--json]
//
// S is [images, n, H, W] (or [n, H, W] for one image), A is [images, m, H, W] (or
// [m, H, W]); any dtype io/npy.hpp reads; a pixel is foreground when its value > 0.5; NaN
// is an error. apps/ambiseg-eval.cpp only forwards argv to run_eval_cli.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg/metrics/evaluate.hpp"

namespace ambiseg::metrics {

struct eval_cli_options {
  std::string samples, annotations;
  std::optional<double> pp_ratio;
  bool json = false;
  bool unbiased = false;
  bool help = false;
};

inline std::string eval_usage(std::string_view program = "ambiseg-eval") {
  std::string p(program);
  return "usage: " + p +
         " --samples S.npy --annotations A.npy [--pp R] [--unbiased] [--json]\n"
         "\n"
         "Scores sampled segmentation masks against the annotations of each image.\n"
         "  --samples S.npy      samples, shape (images, n, H, W) or (n, H, W)\n"
         "  --annotations A.npy  annotations, shape (images, m, H, W) or (m, H, W)\n"
         "                       any of bool, (u)int8..64, float32, float64; foreground = value > 0.5\n"
         "  --pp R               also report metrics after relative-area post-processing with\n"
         "                       ratio R in [0, 1] (the paper uses 0.5)\n"
         "  --unbiased           GED with the unbiased estimator (within-set means skip i = i');\n"
         "                       default: the paper's/PHiSeg's all-pairs estimator\n"
         "  --json               print one JSON object instead of a table\n"
         "  -h, --help           print this help\n"
         "\n"
         "Reported per image, then averaged over images: GED (the squared distance D^2_GED that\n"
         "the paper tabulates), dice and IoU (means over all sample/annotation pairs) and\n"
         "HM-IoU (Hungarian-matched IoU over lcm(n, m) repeats).\n";
}

// args: the command line without the program name. Throws value_error on bad usage.
inline eval_cli_options parse_eval_cli(std::span<const std::string> args) {
  eval_cli_options o;
  for (std::size_t k = 0; k < args.size(); ++k) {
    std::string arg = args[k];
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0) {
      if (const auto eq = arg.find('='); eq != std::string::npos) {
        inline_value = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
      }
    }
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      throw_if<value_error>(k + 1 >= args.size(), "option ", arg, " needs a value");
      return args[++k];
    };
    auto no_value = [&] { throw_if<value_error>(inline_value.has_value(), "option ", arg, " takes no value"); };
    if (arg == "-h" || arg == "--help") {
      no_value();
      o.help = true;
    } else if (arg == "--samples") {
      o.samples = value();
    } else if (arg == "--annotations") {
      o.annotations = value();
    } else if (arg == "--pp") {
      const std::string v = value();
      std::size_t used = 0;
      double r = 0.0;
      try {
        r = std::stod(v, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      throw_if<value_error>(used == 0 || used != v.size() || !(r >= 0.0 && r <= 1.0), "--pp needs a ratio in [0, 1], got '",
                            v, "'");
      o.pp_ratio = r;
    } else if (arg == "--json") {
      no_value();
      o.json = true;
    } else if (arg == "--unbiased") {
      no_value();
      o.unbiased = true;
    } else {
      throw value_error("unknown argument '" + args[k] + "'");
    }
  }
  if (!o.help) {
    throw_if<value_error>(o.samples.empty(), "--samples is required");
    throw_if<value_error>(o.annotations.empty(), "--annotations is required");
  }
  return o;
}

// Masks loaded from .npy: [images, count, H, W] as 0/1 bytes.
struct mask_batch {
  std::vector<std::uint8_t> data;
  std::int64_t images = 0, count = 0, height = 0, width = 0;

  mask_batch_view view() const { return {data.data(), images, count, height, width}; }
};

// value > 0.5 is foreground; NaN is refused.
struct foreground_threshold {
  template <class U>
  std::uint8_t operator()(U v) const {
    if constexpr (std::is_floating_point_v<U>) {
      throw_if<value_error>(std::isnan(v), "NaN value in a mask");
      return v > U(0.5) ? 1 : 0;
    } else {
      return v > 0 ? 1 : 0;  // an integer exceeds 0.5 exactly when it is >= 1
    }
  }
};

inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// what: "samples" or "annotations", for the messages.
inline mask_batch load_mask_batch(const std::filesystem::path& path, std::string_view what) {
  const auto header = io::read_npy_header(path);  // rank checked before reading the data
  const std::string where = std::string(what) + " '" + path.string() + "'";
  throw_if<shape_error>(header.shape.size() != 3 && header.shape.size() != 4, where, " has shape ",
                        shape_string(header.shape), "; expected (images, ", what == "samples" ? "n" : "m",
                        ", H, W) or (", what == "samples" ? "n" : "m", ", H, W)");
  auto a = io::read_npy_with<std::uint8_t>(path, foreground_threshold{});
  mask_batch b;
  const bool one_image = a.shape.size() == 3;
  b.images = one_image ? 1 : a.shape[0];
  b.count = a.shape[one_image ? 0 : 1];
  b.height = a.shape[one_image ? 1 : 2];
  b.width = a.shape[one_image ? 2 : 3];
  throw_if<shape_error>(b.images < 1 || b.count < 1 || b.height < 1 || b.width < 1, where, " has shape ",
                        shape_string(a.shape), " with an empty axis");
  b.data = std::move(a.data);
  return b;
}

inline nlohmann::ordered_json evaluation_to_json(const evaluation_result& r) {
  nlohmann::ordered_json j;
  j["images"] = r.images;
  j["n"] = r.n;
  j["m"] = r.m;
  j["height"] = r.height;
  j["width"] = r.width;
  j["ged_estimator"] = std::string(to_string(r.options.estimator));
  j["ged"] = r.raw.ged;
  j["dice"] = r.raw.dice;
  j["iou"] = r.raw.iou;
  j["hm_iou"] = r.raw.hm_iou;
  if (r.pp) {
    j["pp_ratio"] = *r.options.pp_ratio;
    j["ged_pp"] = r.pp->ged;
    j["dice_pp"] = r.pp->dice;
    j["iou_pp"] = r.pp->iou;
    j["hm_iou_pp"] = r.pp->hm_iou;
  }
  return j;
}

inline std::string evaluation_table(const evaluation_result& r) {
  char line[160];
  std::string s;
  std::snprintf(line, sizeof line, "%lld images, n = %lld samples, m = %lld annotations, %lldx%lld\n",
                static_cast<long long>(r.images), static_cast<long long>(r.n), static_cast<long long>(r.m),
                static_cast<long long>(r.height), static_cast<long long>(r.width));
  s += line;
  if (r.pp) std::snprintf(line, sizeof line, "%-8s %10s %10s\n", "metric", "raw", "pp");
  else std::snprintf(line, sizeof line, "%-8s %10s\n", "metric", "raw");
  s += line;
  auto row = [&](const char* name, double raw, std::optional<double> pp) {
    if (pp) std::snprintf(line, sizeof line, "%-8s %10.4f %10.4f\n", name, raw, *pp);
    else std::snprintf(line, sizeof line, "%-8s %10.4f\n", name, raw);
    s += line;
  };
  auto pp = [&](double set_metrics::*field) -> std::optional<double> {
    return r.pp ? std::optional<double>((*r.pp).*field) : std::nullopt;
  };
  row("GED", r.raw.ged, pp(&set_metrics::ged));
  row("dice", r.raw.dice, pp(&set_metrics::dice));
  row("IoU", r.raw.iou, pp(&set_metrics::iou));
  row("HM-IoU", r.raw.hm_iou, pp(&set_metrics::hm_iou));
  s += "GED is D^2_GED, " + std::string(r.options.estimator == ged_estimator::all_pairs
                                            ? "all-pairs estimator (as the paper and PHiSeg)"
                                            : "unbiased estimator (i = i' excluded)");
  if (r.pp) {
    std::snprintf(line, sizeof line, "; pp = relative-area post-processing, r = %g", *r.options.pp_ratio);
    s += line;
  }
  return s + "\n";
}

// The whole tool: 0 on success, 2 for a usage error, 1 for bad data. Messages go to err.
inline int run_eval_cli(std::span<const std::string> args, std::ostream& out, std::ostream& err) {
  eval_cli_options o;
  try {
    o = parse_eval_cli(args);
  } catch (const error& e) {
    err << "ambiseg-eval: error: " << e.what() << "\n" << eval_usage();
    return 2;
  }
  if (o.help) {
    out << eval_usage();
    return 0;
  }
  try {
    const mask_batch s = load_mask_batch(o.samples, "samples");
    const mask_batch a = load_mask_batch(o.annotations, "annotations");
    throw_if<shape_error>(s.images != a.images, "samples '", o.samples, "' hold ", s.images,
                          " images but annotations '", o.annotations, "' hold ", a.images);
    throw_if<shape_error>(s.height != a.height || s.width != a.width, "samples '", o.samples, "' are ", s.height, "x",
                          s.width, " but annotations '", o.annotations, "' are ", a.height, "x", a.width);
    evaluation_options options;
    options.estimator = o.unbiased ? ged_estimator::unbiased : ged_estimator::all_pairs;
    options.pp_ratio = o.pp_ratio;
    const evaluation_result r = evaluate(s.view(), a.view(), options);
    if (o.json) out << evaluation_to_json(r).dump() << "\n";
    else out << evaluation_table(r);
    return 0;
  } catch (const std::exception& e) {  // ambiseg::error, and bad_alloc on a huge valid file
    err << "ambiseg-eval: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ambiseg::metrics
