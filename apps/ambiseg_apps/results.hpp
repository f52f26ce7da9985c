// ambiseg_apps/results.hpp — the one writer of evaluation results, used by `ambiseg eval`
// and `ambiseg-eval`: one JSON document with one set of keys (docs/metrics.md, "Result
// files"), one markdown table, and both written as DIR/eval.json and DIR/eval.md.
//
//   {"info": {what was scored: the tool's inputs},
//    "results": [{"method", "n", "m", "images", "height", "width", "ged_estimator",
//                 "pp_ratio", "raw": {"ged", "dice", "iou", "hm_iou", "diversity", "ncc", "qubiq",
//                 "ci": {"score", "combined_sensitivity", "max_dice_matching", "diversity_agreement"},
//                 "ci_authors": {the same four}}, "pp": {...}}]}
//
// "pp" is present when post-processing was asked for (pp_ratio is then a number, else null).
#pragma once

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg/metrics/evaluate.hpp"

namespace ambiseg::apps {

// One scored set: `method` names what was scored (model, oracle, majority, raters, or
// the samples file of ambiseg-eval).
struct eval_row {
  std::string method;
  metrics::evaluation_result result;
};

// A published CI score is NaN where a set has one mask; JSON has no NaN, so it is null.
inline nlohmann::ordered_json number_or_null(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

inline nlohmann::ordered_json collective_insight_json(const metrics::collective_insight_score& c) {
  return nlohmann::ordered_json{{"score", number_or_null(c.ci)},
                                {"combined_sensitivity", c.combined_sensitivity},
                                {"max_dice_matching", c.max_dice_matching},
                                {"diversity_agreement", number_or_null(c.diversity_agreement)}};
}

inline nlohmann::ordered_json set_metrics_json(const metrics::set_metrics& m) {
  return nlohmann::ordered_json{{"ged", m.ged},
                                {"dice", m.dice},
                                {"iou", m.iou},
                                {"hm_iou", m.hm_iou},
                                {"diversity", m.diversity},
                                {"ncc", m.ncc},
                                {"qubiq", m.qubiq},
                                {"ci", collective_insight_json(m.ci)},
                                {"ci_authors", collective_insight_json(m.ci_authors)}};
}

inline nlohmann::ordered_json result_json(const eval_row& row) {
  const metrics::evaluation_result& r = row.result;
  nlohmann::ordered_json j{{"method", row.method},
                           {"n", r.n},
                           {"m", r.m},
                           {"images", r.images},
                           {"height", r.height},
                           {"width", r.width},
                           {"ged_estimator", std::string(metrics::to_string(r.options.estimator))},
                           {"pp_ratio", r.options.pp_ratio ? nlohmann::ordered_json(*r.options.pp_ratio)
                                                           : nlohmann::ordered_json(nullptr)},
                           {"raw", set_metrics_json(r.raw)}};
  if (r.pp) j["pp"] = set_metrics_json(*r.pp);
  return j;
}

inline nlohmann::ordered_json results_json(const std::vector<eval_row>& rows, const nlohmann::ordered_json& info) {
  nlohmann::ordered_json j;
  j["info"] = info;
  auto& list = j["results"] = nlohmann::ordered_json::array();
  for (const auto& r : rows) list.push_back(result_json(r));
  return j;
}

inline std::string results_markdown(const std::vector<eval_row>& rows) {
  std::ostringstream md;
  const bool pp = !rows.empty() && rows[0].result.pp.has_value();
  md << "| method | n | GED² | dice | IoU | HM-IoU | diversity | NCC | QUBIQ | CI | CI (authors) |"
     << (pp ? " GED² pp | dice pp | IoU pp | HM-IoU pp | diversity pp | NCC pp | QUBIQ pp | CI pp | CI (authors) pp |"
            : "")
     << "\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|" << (pp ? "---:|---:|---:|---:|---:|---:|---:|---:|---:|" : "")
     << "\n";
  auto cells = [&](const metrics::set_metrics& m) {
    char buf[320];
    std::snprintf(buf, sizeof buf, " %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |", m.ged, m.dice,
                  m.iou, m.hm_iou, m.diversity, m.ncc, m.qubiq, m.ci.ci, m.ci_authors.ci);
    return std::string(buf);
  };
  for (const auto& r : rows) {
    md << "| " << r.method << " | " << r.result.n << " |" << cells(r.result.raw);
    if (r.result.pp) md << cells(*r.result.pp);
    md << "\n";
  }
  return md.str();
}

struct written_results {
  std::string json, markdown;
};

inline written_results format_results(const std::vector<eval_row>& rows, const nlohmann::ordered_json& info) {
  return {results_json(rows, info).dump(2) + "\n", results_markdown(rows)};
}

// DIR/eval.json and DIR/eval.md, each written atomically. `dir` exists (prepared before
// the work: output.hpp).
inline void write_result_files(const std::filesystem::path& dir, const written_results& w) {
  io::write_file_atomically(dir / "eval.json", w.json);
  io::write_file_atomically(dir / "eval.md", w.markdown);
}

}  // namespace ambiseg::apps
