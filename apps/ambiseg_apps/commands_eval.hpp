// ambiseg_apps/commands_eval.hpp — `ambiseg eval`: the paper's protocol (SPEC §8).
//
// For each test image max(n) masks are sampled once; the first n of them are the n-sample
// set (chains are independent, so any n of them are an n-sample draw). Scored against the
// case's annotations: GED² (all-pairs estimator), dice, IoU, HM-IoU, raw and after
// relative-area post-processing. With --baselines two reference rows. Synthetic data:
//   oracle    n fresh annotations per image from the generator's annotator model
//   majority  one deterministic mask repeated n times: the pixel-wise majority of 64
//             oracle annotations (a perfect "most likely mask" segmenter)
// Real data (no annotator model; both rows read the test labels, so they are reference
// points, not methods):
//   raters    n of the image's own m annotations drawn with replacement (a model that
//             reproduces the raters' empirical distribution exactly)
//   majority  the pixel-wise strict majority of the m annotations, repeated n times
// The rows are written by results.hpp, the same writer as ambiseg-eval's.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device_context.hpp"
#include "ambiseg/metrics/evaluate.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/gpu_ranks.hpp"
#include "ambiseg_apps/inputs.hpp"
#include "ambiseg_apps/model_api.hpp"
#include "ambiseg_apps/output.hpp"
#include "ambiseg_apps/results.hpp"

namespace ambiseg::apps {

// masks [B, N, H, W] (N ≥ n) → the first n per image, contiguous [B, n, H, W].
inline std::vector<std::uint8_t> first_samples(tensor_view<const std::uint8_t> masks, int n) {
  const std::int64_t b = masks.size(0), total = masks.size(1), plane = masks.size(2) * masks.size(3);
  throw_if<value_error>(n > total, "first_samples: ", n, " of ", total);
  std::vector<std::uint8_t> out(static_cast<std::size_t>(b * n * plane));
  for (std::int64_t k = 0; k < b; ++k)
    std::copy(masks.data() + k * total * plane, masks.data() + (k * total + n) * plane,
              out.begin() + k * n * plane);
  return out;
}

// The annotations of cases, [B, m, H, W] contiguous (every case must have the same m).
struct annotation_batch {
  std::vector<std::uint8_t> bytes;
  std::int64_t images = 0, m = 0, height = 0, width = 0;
  metrics::mask_batch_view view() const { return {bytes.data(), images, m, height, width}; }
};

inline annotation_batch gather_annotations(const data::case_set& cases) {
  throw_if<value_error>(cases.empty(), "gather_annotations: no cases");
  annotation_batch a;
  a.images = static_cast<std::int64_t>(cases.size());
  a.m = cases[0].annotations();
  a.height = cases[0].height();
  a.width = cases[0].width();
  const std::int64_t plane = a.height * a.width;
  a.bytes.resize(static_cast<std::size_t>(a.images * a.m * plane));
  for (std::int64_t k = 0; k < a.images; ++k) {
    const data::case_ref c = cases[static_cast<std::size_t>(k)];
    throw_if<value_error>(c.annotations() != a.m, "case '", c.id, "' has ", c.annotations(),
                          " annotations, the first has ", a.m, " (the protocol needs the same m)");
    std::copy(c.masks.data(), c.masks.data() + a.m * plane, a.bytes.begin() + k * a.m * plane);
  }
  return a;
}

// The first n of the sampled masks [B, N, H, W] scored against the annotations: eval's
// "model" rows, and the validation of `train --select-best-by`.
inline metrics::evaluation_result score_samples(const sample_result& r, int n, const annotation_batch& a,
                                                const metrics::evaluation_options& options) {
  const std::vector<std::uint8_t> masks = first_samples(r.masks.cview(), n);
  return metrics::evaluate({masks.data(), a.images, n, a.height, a.width}, a.view(), options);
}

// Under mpirun (group of several ranks) the sampling is spread over the ranks
// (draw_masks_over_ranks) and rank 0 scores and writes; the others return after sampling.
template <class Device>
int run_eval_on(const eval_command& asked, std::ostream& out, std::ostream& err, train::communicator* group) {
  const bool spread = group && group->size() > 1;
  device_context<Device> context;  // the model's stream on a GPU; nothing on the CPU
  const typename device_context<Device>::scope on_context(context);
  sampling_model<Device> m = load_for_sampling<Device>(asked.ckpt, asked.use_ema);
  const eval_command cmd = with_model_sampling(asked, m, err);
  const input_format format = input_format_of(m);
  data_request dr = cmd.data;
  dr.synthetic_size = format.crop_size;
  const sample_inputs in = gather_inputs(format, dr, std::nullopt, cmd.images);
  const std::int64_t b = in.images.size(0), h = in.images.size(2), w = in.images.size(3), plane = h * w;
  const annotation_batch gathered = gather_annotations(in.cases);
  const std::vector<std::uint8_t>& annotations = gathered.bytes;
  const std::int64_t anns = gathered.m;
  const metrics::mask_batch_view ann_view = gathered.view();
  // One options set per post-processing ratio (a row each), or one without post-processing.
  std::vector<metrics::evaluation_options> scorings(std::max<std::size_t>(1, cmd.pp.size()));
  for (std::size_t k = 0; k < cmd.pp.size(); ++k) scorings[k].pp_ratio = cmd.pp[k];
  const int n_max = *std::max_element(cmd.n.begin(), cmd.n.end());

  rng g(cmd.seed);
  const draw_options drawing{n_max, cmd.steps, cmd.sampler, cmd.clip_x0, cmd.spacing};
  const sampling_cost cost = timed([&] {
    return spread ? draw_masks_over_ranks(m, in.images.cview(), drawing, cmd.seed, *group)
                  : draw_masks(m, in.images.cview(), drawing, g);
  });
  if (spread && group->rank() != 0) return 0;
  const sample_result& r = cost.result;
  const double seconds = cost.seconds;
  err << "ambiseg eval: sampled " << b << " images x " << n_max << " in " << seconds << " s"
      << (spread ? " over " + group->describe() + " (rank 0's CPU time below)" : std::string()) << "\n";

  std::vector<eval_row> rows;
  auto score = [&](const std::string& method, int n, const std::vector<std::uint8_t>& masks) {
    for (const auto& eo : scorings) rows.push_back({method, metrics::evaluate({masks.data(), b, n, h, w}, ann_view, eo)});
  };
  for (int n : cmd.n)
    for (const auto& eo : scorings) rows.push_back({"model", score_samples(r, n, gathered, eo)});

  if (cmd.baselines && dr.spec == "synthetic") {
    // The test cases are the generator's images in.generator_indices (data_source.hpp).
    const data::synthetic_lesions gen(data::synthetic_config{.size = format.crop_size, .seed = dr.synthetic_seed});
    rng oracle_rng = rng::derive(cmd.seed, 7);
    for (int n : cmd.n) {
      std::vector<std::uint8_t> oracle(static_cast<std::size_t>(b * n * plane)), majority(oracle.size());
      for (std::int64_t k = 0; k < b; ++k) {
        const std::uint64_t index = in.generator_indices.at(static_cast<std::size_t>(k));
        const auto fresh = gen.annotations(index, n, oracle_rng);
        std::copy(fresh.data(), fresh.data() + n * plane, oracle.begin() + k * n * plane);
        const auto many = gen.annotations(index, 64, oracle_rng);
        for (std::int64_t p = 0; p < plane; ++p) {
          int votes = 0;
          for (int a = 0; a < 64; ++a) votes += many[a * plane + p];
          for (int j = 0; j < n; ++j) majority[static_cast<std::size_t>((k * n + j) * plane + p)] = votes > 32 ? 1 : 0;
        }
      }
      score("oracle", n, oracle);
      score("majority", n, majority);
    }
  } else if (cmd.baselines) {
    rng rater_rng = rng::derive(cmd.seed, 8);
    for (int n : cmd.n) {
      std::vector<std::uint8_t> raters(static_cast<std::size_t>(b * n * plane)), majority(raters.size());
      for (std::int64_t k = 0; k < b; ++k) {
        const std::uint8_t* own = annotations.data() + k * anns * plane;
        for (int j = 0; j < n; ++j) {
          const auto a = static_cast<std::int64_t>(rater_rng.below(static_cast<std::uint64_t>(anns)));
          std::copy(own + a * plane, own + (a + 1) * plane, raters.begin() + (k * n + j) * plane);
        }
        for (std::int64_t p = 0; p < plane; ++p) {
          std::int64_t votes = 0;
          for (std::int64_t a = 0; a < anns; ++a) votes += own[a * plane + p] != 0;
          for (int j = 0; j < n; ++j)
            majority[static_cast<std::size_t>((k * n + j) * plane + p)] = 2 * votes > anns ? 1 : 0;
        }
      }
      score("raters", n, raters);
      score("majority", n, majority);
    }
  }

  const nlohmann::ordered_json info{{"checkpoint", cmd.ckpt.string()},
                                    {"step", m.step},
                                    {"data", cmd.data.spec},
                                    {"folds", folds_text(cmd.data)},
                                    {"sampler", sampler_name(cmd.sampler)},
                                    {"spacing", diffusion::spacing_name(cmd.spacing)},
                                    {"steps", cmd.steps},
                                    {"ema_weights", m.ema_weights},
                                    {"model", std::string(m.model->kind_name())},
                                    {"parameters", m.model->parameters().count()},
                                    {"network_passes_per_mask", passes_per_mask(m, cmd.steps, cmd.sampler)},
                                    {"sampling_seconds", seconds},
                                    {"sampling_cpu_seconds", cost.cpu_seconds},
                                    {"ranks", spread ? group->size() : 1}};
  const written_results results = format_results(rows, info);
  out << results.json << "\n" << results.markdown;
  if (cmd.out) {
    write_result_files(*cmd.out, results);
    err << "wrote " << (*cmd.out / "eval.json").string() << " and " << (*cmd.out / "eval.md").string() << "\n";
  }
  return 0;
}

// A note when the evaluated cases may include ones the checkpoint trained on: its run used
// other folds than the command line (or folds where the command line has none, or none
// where it has some). Checkpoints from before the folds were recorded say nothing.
inline void warn_about_folds(const eval_command& cmd, std::ostream& err) {
  const auto trained = checkpoint_metadata(cmd.ckpt, folds_key);
  if (!trained || *trained == folds_text(cmd.data)) return;
  err << "warning: " << cmd.ckpt.string() << " was trained with --folds/--fold " << *trained
      << ", this evaluation uses " << folds_text(cmd.data)
      << " (fold/folds): its test cases may include cases the model trained on\n";
}

inline int run_eval(const eval_command& cmd, std::ostream& out, std::ostream& err,
                    train::communicator* group = nullptr) {
  check_input_file(cmd.ckpt, "--ckpt");
  warn_about_folds(cmd, err);
  if (cmd.out && (!group || group->rank() == 0)) prepare_output_folder(*cmd.out, "--out folder");
  const gpu_for_rank gpu(cmd.device, group);
  return on_device(cmd.device, [&]<class D>() { return run_eval_on<D>(cmd, out, err, group); });
}

}  // namespace ambiseg::apps
