// ambiseg_apps/args.hpp — the one command-line reader of the tools (`ambiseg`, `ambiseg-eval`).
//
// Options are `--name value`, `--name=value` or a flag `--name`; short options (`-n 4`)
// take their value from the next argument. Every error is a value_error whose message
// names the option and the offending text; the tool prefixes its name and prints its usage.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "ambiseg/core/error.hpp"

namespace ambiseg::apps {

// Steps, seeds and counts beyond this are typing mistakes, not plans (2^40).
inline constexpr std::int64_t largest_count = std::int64_t{1} << 40;

namespace args_detail {

inline std::optional<std::int64_t> to_integer(std::string_view text) {
  std::int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return v;
}

// Digits with an optional sign but too large for 64 bits: reported as out of range.
inline bool looks_like_integer(std::string_view text) {
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) text.remove_prefix(1);
  if (text.empty()) return false;
  for (char c : text)
    if (c < '0' || c > '9') return false;
  return true;
}

// The shortest text that reads back as v (0.999999999, not the stream's 1).
inline std::string number_text(double v) {
  char buf[32];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, ptr) : std::to_string(v);
}

inline std::string list_of(const std::vector<std::string>& names) {
  std::string s;
  for (std::size_t k = 0; k < names.size(); ++k) s += (k ? ", " : "") + names[k];
  return s;
}

}  // namespace args_detail

class arg_reader {
 public:
  explicit arg_reader(std::span<const std::string> args) : args_(args) {}

  // Moves to the next option; false at the end. A bare word is refused: every value
  // belongs to an option.
  bool next() {
    if (i_ >= args_.size()) return false;
    const std::string& a = args_[i_++];
    throw_if<value_error>(a.size() < 2 || a[0] != '-', "unexpected argument '", a,
                          "' (options start with --; a value belongs after its option)");
    inline_value_.reset();
    const auto eq = a.find('=');
    if (eq != std::string::npos && a.rfind("--", 0) == 0) {
      name_ = a.substr(0, eq);
      inline_value_ = a.substr(eq + 1);
    } else {
      name_ = a;
    }
    return true;
  }

  const std::string& name() const { return name_; }
  bool is(std::string_view option) const { return name_ == option; }

  // The option's value. A following `--word` is taken for a forgotten value, not as one
  // (`--out --resume`); `--out=--odd-name` passes such a value on purpose.
  std::string value() {
    if (inline_value_) return *std::exchange(inline_value_, std::nullopt);
    throw_if<value_error>(i_ >= args_.size(), "option ", name_, " needs a value");
    const std::string& v = args_[i_];
    throw_if<value_error>(v.rfind("--", 0) == 0, "option ", name_, " needs a value (found the option '", v,
                          "' instead; write ", name_, "=", v, " if that is the value)");
    ++i_;
    return v;
  }
  // A value that must not be empty (a path, a name).
  std::string text() {
    std::string v = value();
    throw_if<value_error>(v.empty(), "option ", name_, " needs a non-empty value");
    return v;
  }
  void flag() const { throw_if<value_error>(inline_value_.has_value(), "option ", name_, " takes no value"); }

  std::int64_t integer(std::int64_t lo, std::int64_t hi) { return checked_integer(value(), lo, hi, ""); }

  double real(double lo, double hi) { return checked_real(value(), lo, hi); }

  // A ratio in [0, 1], or `none`.
  std::optional<double> ratio_or_none() {
    if (inline_value_ == "none" || (!inline_value_ && i_ < args_.size() && args_[i_] == "none")) {
      value();
      return std::nullopt;
    }
    return real(0.0, 1.0);
  }

  // "r1,r2,...": ratios in [0, 1], strictly increasing; `none`: the empty list.
  std::vector<double> ratios_or_none() {
    const std::string text = value();
    std::vector<double> out;
    if (text == "none") return out;
    std::size_t start = 0;
    while (true) {
      const auto comma = text.find(',', start);
      const double v = checked_real(text.substr(start, comma == std::string::npos ? std::string::npos : comma - start), 0.0, 1.0);
      if (!out.empty() && v <= out.back())
        throw value_error("option " + name_ + ": values must increase (" + args_detail::number_text(out.back()) +
                          " then " + args_detail::number_text(v) + ")");
      out.push_back(v);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return out;
  }

 private:
  double checked_real(const std::string& v, double lo, double hi) const {
    double x = 0;
    const char* end = v.data() + v.size();
    const auto [ptr, ec] = std::from_chars(v.data(), end, x);
    throw_if<value_error>(v.empty() || ptr != end || (ec != std::errc() && ec != std::errc::result_out_of_range) ||
                              !std::isfinite(x),
                          "option ", name_, ": '", v, "' is not a number");
    throw_if<value_error>(ec == std::errc::result_out_of_range || x < lo || x > hi, "option ", name_, ": ", v,
                          " is outside [", args_detail::number_text(lo), ", ", args_detail::number_text(hi), "]");
    return x;
  }

 public:

  std::string choice(const std::vector<std::string>& allowed) {
    const std::string v = value();
    for (const auto& a : allowed)
      if (a == v) return v;
    throw value_error("option " + name_ + ": '" + v + "' is not one of " + args_detail::list_of(allowed));
  }

  // "a,b,c": integers in [lo, hi]; `increasing` demands a strictly increasing list.
  std::vector<std::int64_t> integer_list(std::int64_t lo, std::int64_t hi, bool increasing, const char* example) {
    const std::string text = value();
    const std::string hint = std::string(" (use e.g. ") + name_ + " " + example + ")";
    std::vector<std::int64_t> out;
    std::size_t start = 0;
    while (true) {
      const auto comma = text.find(',', start);
      const std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      const std::int64_t v = checked_integer(item, lo, hi, hint);
      // throw_if evaluates its message eagerly, so out.back() must not be reached on an empty list.
      if (increasing && !out.empty() && v <= out.back())
        throw value_error("option " + name_ + ": values must increase (" + std::to_string(out.back()) + " then " +
                          std::to_string(v) + ")");
      out.push_back(v);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    return out;
  }

  [[noreturn]] void unknown() const { throw value_error("unknown option '" + name_ + "'"); }

 private:
  std::int64_t checked_integer(const std::string& v, std::int64_t lo, std::int64_t hi, const std::string& hint) const {
    const auto x = args_detail::to_integer(v);
    throw_if<value_error>(!x && args_detail::looks_like_integer(v), "option ", name_, ": ", v,
                          " is outside [", lo, ", ", hi, "]", hint);
    throw_if<value_error>(!x, "option ", name_, ": '", v, "' is not an integer", hint);
    throw_if<value_error>(*x < lo || *x > hi, "option ", name_, ": ", *x, " is outside [", lo, ", ", hi, "]",
                          hint);
    return *x;
  }

  std::span<const std::string> args_;
  std::size_t i_ = 0;
  std::string name_;
  std::optional<std::string> inline_value_;
};

}  // namespace ambiseg::apps
