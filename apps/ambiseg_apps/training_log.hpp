// ambiseg_apps/training_log.hpp — DIR/log.csv of `ambiseg train`: one row per step,
//
//   step,loss,lr,grad_norm,seconds,cpu_seconds
//
// and the reading of an earlier run's rows on --resume. The rows up to the checkpoint are
// kept whole (every column, as written); a row that cannot be read, rows after the
// checkpoint (those steps run again) and steps without a row are each reported as a
// warning that names the file and the line, never an error: a log is a record, the
// checkpoint is the state.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "ambiseg_apps/args.hpp"

namespace ambiseg::apps {

inline constexpr std::string_view training_log_header = "step,loss,lr,grad_norm,seconds,cpu_seconds";
inline constexpr std::size_t training_log_columns = 6;

struct training_log {
  std::vector<std::string> rows;  // as written, one per kept step, without the newline
  std::vector<std::int64_t> steps;
  std::vector<double> loss;
};

namespace log_detail {

inline std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const auto comma = line.find(',', start);
    out.push_back(line.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

inline std::optional<double> to_real(std::string_view text) {
  double v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) return std::nullopt;
  return v;
}

inline std::string shown(std::string_view line) {
  return line.size() <= 60 ? std::string(line) : std::string(line.substr(0, 57)) + "...";
}

// "3–7, 12, 15–20 and 2 more ranges"
inline std::string ranges_text(const std::vector<std::pair<std::int64_t, std::int64_t>>& ranges) {
  std::string s;
  const std::size_t shown_ranges = std::min<std::size_t>(ranges.size(), 3);
  for (std::size_t k = 0; k < shown_ranges; ++k) {
    const auto [a, b] = ranges[k];
    if (k) s += ", ";
    s += std::to_string(a);
    if (a != b) s.append("-").append(std::to_string(b));
  }
  if (ranges.size() > shown_ranges) s += " and " + std::to_string(ranges.size() - shown_ranges) + " more ranges";
  return s;
}

}  // namespace log_detail

// The rows of an earlier run for steps 1…upto. Whatever cannot be used is reported on
// `warnings`, one line each, naming the file (and the line where there is one).
inline training_log read_training_log(const std::filesystem::path& csv, std::int64_t upto, std::ostream& warnings) {
  training_log log;
  const std::string where = csv.string();
  std::ifstream in(csv);
  if (!in) {
    if (upto > 0)
      warnings << "warning: " << where << " cannot be read: the new log has no rows for steps 1-" << upto
               << " (the run itself resumes from its checkpoint)\n";
    return log;
  }
  std::string line;
  std::int64_t line_number = 1, after_checkpoint = 0;
  if (std::getline(in, line) && line != training_log_header)
    warnings << "warning: " << where << ":1: the header '" << log_detail::shown(line) << "' is not '"
             << training_log_header << "'; the rows are read in that column order\n";
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty()) continue;
    const auto f = log_detail::fields(line);
    const auto step = f.size() >= 2 ? args_detail::to_integer(f[0]) : std::nullopt;
    const auto loss = f.size() >= 2 ? log_detail::to_real(f[1]) : std::nullopt;
    if (!step || !loss || *step < 1 || f.size() > training_log_columns) {
      warnings << "warning: " << where << ":" << line_number << ": cannot read '" << log_detail::shown(line)
               << "' as " << training_log_header << "; the row is left out\n";
      continue;
    }
    if (*step > upto) {
      ++after_checkpoint;
      continue;
    }
    if (!log.steps.empty() && *step <= log.steps.back()) {
      warnings << "warning: " << where << ":" << line_number << ": step " << *step << " follows step "
               << log.steps.back() << "; the row is left out\n";
      continue;
    }
    std::string row = line;
    row.append(training_log_columns - f.size(), ',');  // an older log's missing columns, empty
    log.rows.push_back(std::move(row));
    log.steps.push_back(*step);
    log.loss.push_back(*loss);
  }
  if (after_checkpoint > 0)
    warnings << "warning: " << where << ": " << after_checkpoint << " row(s) after step " << upto
             << " (the checkpoint) are left out; those steps run again\n";
  std::vector<std::pair<std::int64_t, std::int64_t>> missing;
  std::int64_t expected = 1;
  for (std::int64_t s : log.steps) {
    if (s > expected) missing.emplace_back(expected, s - 1);
    expected = s + 1;
  }
  if (expected <= upto) missing.emplace_back(expected, upto);
  if (!missing.empty())
    warnings << "warning: " << where << " has no rows for steps " << log_detail::ranges_text(missing)
             << " of 1-" << upto << " (the checkpoint's step): the log and loss.png have gaps there\n";
  return log;
}

}  // namespace ambiseg::apps
