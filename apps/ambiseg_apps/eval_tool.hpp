// ambiseg_apps/eval_tool.hpp — the logic of the `ambiseg-eval` tool, testable in-process.
//
//   ambiseg-eval --samples S.npy --annotations A.npy [--pp R|none] [--unbiased] [--protocol paper]
//                [--json] [--out DIR]
//
// S is [images, n, H, W] (or [n, H, W] for one image), A is [images, m, H, W] (or
// [m, H, W]); any dtype io/npy.hpp reads; a pixel is foreground when its value > 0.5; NaN
// is an error. Arguments are read by args.hpp and the result written by results.hpp,
// as `ambiseg eval` does. apps/ambiseg-eval.cpp only forwards argv to run_eval_tool.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <new>
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
#include "ambiseg_apps/args.hpp"
#include "ambiseg_apps/output.hpp"
#include "ambiseg_apps/results.hpp"

namespace ambiseg::apps {

struct eval_tool_options {
  std::string samples, annotations;
  std::optional<double> pp_ratio;
  bool json = false;
  bool unbiased = false;
  bool paper_protocol = false;  // the first 4 samples, all-pairs GED, pp 0.5
  std::optional<std::filesystem::path> out;  // DIR for eval.json and eval.md
  bool help = false;
};

inline std::string eval_usage(std::string_view program = "ambiseg-eval") {
  std::string p(program);
  return "usage: " + p +
         " --samples S.npy --annotations A.npy [--pp R|none] [--unbiased] [--protocol paper]\n"
         "       [--json] [--out DIR]\n"
         "\n"
         "Scores sampled segmentation masks against the annotations of each image.\n"
         "  --samples S.npy      samples, shape (images, n, H, W) or (n, H, W)\n"
         "  --annotations A.npy  annotations, shape (images, m, H, W) or (m, H, W)\n"
         "                       any of bool, (u)int8..64, float32, float64; foreground = value > 0.5\n"
         "  --pp R               also report metrics after relative-area post-processing with\n"
         "                       ratio R in [0, 1] (the paper uses 0.5); none: raw only (default)\n"
         "  --unbiased           GED with the unbiased estimator (within-set means skip i = i');\n"
         "                       default: the paper's/PHiSeg's all-pairs estimator\n"
         "  --protocol paper     the paper's convention: the first 4 samples of each image, the\n"
         "                       all-pairs estimator and --pp 0.5 (not combinable with --pp, --unbiased)\n"
         "  --json               print the JSON document instead of the table\n"
         "  --out DIR            also write DIR/eval.json and DIR/eval.md\n"
         "  -h, --help           print this help\n"
         "\n"
         "Reported per image, then averaged over images: GED (the squared distance D^2_GED that\n"
         "the paper tabulates), dice and IoU (means over all sample/annotation pairs) and\n"
         "HM-IoU (Hungarian-matched IoU over lcm(n, m) repeats), the samples' diversity, S_NCC of\n"
         "the uncertainty maps, the QUBIQ score and the CI score (as published and as the paper's\n"
         "code computes it). The JSON keys are those of `ambiseg eval` (docs/metrics.md).\n";
}

// args: the command line without the program name. Throws value_error on bad usage.
inline eval_tool_options parse_eval_tool(std::span<const std::string> args) {
  eval_tool_options o;
  arg_reader r(args);
  bool pp_given = false;
  while (r.next()) {
    if (r.is("-h") || r.is("--help")) r.flag(), o.help = true;
    else if (r.is("--samples")) o.samples = r.text();
    else if (r.is("--annotations")) o.annotations = r.text();
    else if (r.is("--pp")) o.pp_ratio = r.ratio_or_none(), pp_given = true;
    else if (r.is("--json")) r.flag(), o.json = true;
    else if (r.is("--unbiased")) r.flag(), o.unbiased = true;
    else if (r.is("--protocol")) o.paper_protocol = r.choice({"paper", "default"}) == "paper";
    else if (r.is("--out")) o.out = r.text();
    else r.unknown();
  }
  if (o.paper_protocol) {
    throw_if<value_error>(o.unbiased, "--protocol paper uses the all-pairs estimator; drop --unbiased");
    throw_if<value_error>(pp_given, "--protocol paper post-processes with r = 0.5; drop --pp");
    o.pp_ratio = metrics::paper_protocol().pp_ratio;
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

  metrics::mask_batch_view view() const { return {data.data(), images, count, height, width}; }
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
  io::npy_array<std::uint8_t> a;
  try {
    a = io::read_npy_with<std::uint8_t>(path, foreground_threshold{});
  } catch (const value_error& e) {  // the threshold's refusal does not know the file
    throw value_error(where + ": " + e.what());
  }
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

// The table of ambiseg eval (results.hpp) between a line on the inputs and one on the
// estimator.
inline std::string evaluation_table(const std::vector<eval_row>& rows) {
  const metrics::evaluation_result& r = rows.front().result;
  char line[200];
  std::snprintf(line, sizeof line, "%lld images, n = %lld samples, m = %lld annotations, %lldx%lld\n",
                static_cast<long long>(r.images), static_cast<long long>(r.n), static_cast<long long>(r.m),
                static_cast<long long>(r.height), static_cast<long long>(r.width));
  std::string s = line + results_markdown(rows);
  s += "GED² is D²_GED, " + std::string(r.options.estimator == metrics::ged_estimator::all_pairs
                                            ? "all-pairs estimator (as the paper and PHiSeg)"
                                            : "unbiased estimator (i = i' excluded)");
  if (r.pp) {
    std::snprintf(line, sizeof line, "; pp = relative-area post-processing, r = %g", *r.options.pp_ratio);
    s += line;
  }
  return s + "\n";
}

// The whole tool: 0 on success, 2 for a usage error, 1 for bad data. Messages go to err.
inline int run_eval_tool(std::span<const std::string> args, std::ostream& out, std::ostream& err) {
  eval_tool_options o;
  try {
    o = parse_eval_tool(args);
  } catch (const std::exception& e) {
    err << "ambiseg-eval: error: " << e.what() << "\n\n" << eval_usage();
    return 2;
  }
  if (o.help) {
    out << eval_usage();
    return 0;
  }
  try {
    check_input_file(o.samples, "--samples");
    check_input_file(o.annotations, "--annotations");
    if (o.out) prepare_output_folder(*o.out, "--out folder");
    const mask_batch s = load_mask_batch(o.samples, "samples");
    const mask_batch a = load_mask_batch(o.annotations, "annotations");
    throw_if<shape_error>(s.images != a.images, "samples '", o.samples, "' hold ", s.images,
                          " images but annotations '", o.annotations, "' hold ", a.images);
    throw_if<shape_error>(s.height != a.height || s.width != a.width, "samples '", o.samples, "' are ", s.height, "x",
                          s.width, " but annotations '", o.annotations, "' are ", a.height, "x", a.width);
    metrics::evaluation_options options;
    options.estimator = o.unbiased ? metrics::ged_estimator::unbiased : metrics::ged_estimator::all_pairs;
    options.pp_ratio = o.pp_ratio;
    metrics::mask_batch_view samples = s.view();
    std::vector<std::uint8_t> first;  // the paper's protocol scores the first 4 samples of each image
    if (o.paper_protocol) {
      const std::int64_t keep = metrics::paper_protocol_samples, plane = s.height * s.width;
      throw_if<shape_error>(s.count < keep, "--protocol paper scores ", keep, " samples per image but samples '",
                            o.samples, "' hold ", s.count);
      first.resize(static_cast<std::size_t>(s.images * keep * plane));
      for (std::int64_t k = 0; k < s.images; ++k)
        std::copy_n(s.data.begin() + k * s.count * plane, keep * plane, first.begin() + k * keep * plane);
      samples = {first.data(), s.images, keep, s.height, s.width};
    }
    const std::vector<eval_row> rows{{o.samples, metrics::evaluate(samples, a.view(), options)}};
    const written_results w =
        format_results(rows, nlohmann::ordered_json{{"samples", o.samples}, {"annotations", o.annotations}});
    out << (o.json ? w.json : evaluation_table(rows));
    if (o.out) write_result_files(*o.out, w);
    return 0;
  } catch (const std::bad_alloc&) {  // a huge but valid file
    err << "ambiseg-eval: error: out of memory reading '" << o.samples << "' and '" << o.annotations << "'\n";
    return 1;
  } catch (const std::exception& e) {
    err << "ambiseg-eval: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ambiseg::apps
