// ambiseg_apps/plot.hpp — the pictures a user opens, drawn in C++ and written as PNG
// through io/image.hpp: the training loss curve and the grids of tiles.
//
//   canvas       RGB pixels [H, W, 3], lines, rectangles, a 3×5 pixel font (scaled)
//   loss_curve   log-scale loss per step (raw points faint, a moving average bold)
//   tile_grid    rows of equally sized tiles, each coloured by a palette, scaled up by an
//                integer factor and separated by gaps
//   image_grid   one image of `ambiseg sample`: image | annotations | mean | variance,
//                then the samples 8 per row
//   overview_grid  all images, one row each: image | annotations | samples | mean | variance
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/io/image.hpp"
#include "ambiseg_apps/inputs.hpp"
#include "ambiseg_apps/model_api.hpp"

namespace ambiseg::apps {

using rgb = std::array<std::uint8_t, 3>;

class canvas {
 public:
  canvas(std::int64_t height, std::int64_t width, rgb background = {255, 255, 255})
      : pixels_(shape{height, width, 3}) {
    throw_if<value_error>(height < 1 || width < 1, "canvas: size ", height, "x", width);
    for (std::int64_t i = 0; i < height * width; ++i)
      for (int c = 0; c < 3; ++c) pixels_[3 * i + c] = background[static_cast<std::size_t>(c)];
  }
  std::int64_t height() const { return pixels_.size(0); }
  std::int64_t width() const { return pixels_.size(1); }

  void set(std::int64_t y, std::int64_t x, rgb c) {
    if (y < 0 || x < 0 || y >= height() || x >= width()) return;
    for (int k = 0; k < 3; ++k) pixels_[(y * width() + x) * 3 + k] = c[static_cast<std::size_t>(k)];
  }
  void fill(std::int64_t y0, std::int64_t x0, std::int64_t h, std::int64_t w, rgb c) {
    for (std::int64_t y = y0; y < y0 + h; ++y)
      for (std::int64_t x = x0; x < x0 + w; ++x) set(y, x, c);
  }
  // Bresenham, `thickness` pixels square pen.
  void line(double y0, double x0, double y1, double x1, rgb c, int thickness = 1) {
    const int steps = static_cast<int>(std::max(std::abs(y1 - y0), std::abs(x1 - x0))) + 1;
    for (int i = 0; i <= steps; ++i) {
      const double f = static_cast<double>(i) / steps;
      const auto y = static_cast<std::int64_t>(std::lround(y0 + f * (y1 - y0)));
      const auto x = static_cast<std::int64_t>(std::lround(x0 + f * (x1 - x0)));
      fill(y - thickness / 2, x - thickness / 2, thickness, thickness, c);
    }
  }
  // Text in a 3×5 font (digits, '.', '-', '+', ':', 'e' and a few letters), each font
  // pixel drawn as scale×scale.
  void text(std::int64_t y, std::int64_t x, const std::string& s, rgb c, int scale = 2) {
    for (char ch : s) {
      const auto& g = glyph(ch);
      for (int r = 0; r < 5; ++r)
        for (int col = 0; col < 3; ++col)
          if (g[static_cast<std::size_t>(r)] & (4 >> col)) fill(y + r * scale, x + col * scale, scale, scale, c);
      x += 4 * scale;
    }
  }
  static std::int64_t text_width(const std::string& s, int scale = 2) {
    return static_cast<std::int64_t>(s.size()) * 4 * scale;
  }
  tensor_view<const std::uint8_t> pixels() const { return pixels_.cview(); }
  void write(const std::filesystem::path& path) const { io::write_png(path, pixels_.cview()); }

 private:
  // Rows top to bottom, bit 2 = left column.
  static const std::array<std::uint8_t, 5>& glyph(char ch) {
    static const std::array<std::uint8_t, 5> digits[10] = {
        {7, 5, 5, 5, 7}, {2, 6, 2, 2, 7}, {7, 1, 7, 4, 7}, {7, 1, 7, 1, 7}, {5, 5, 7, 1, 1},
        {7, 4, 7, 1, 7}, {7, 4, 7, 5, 7}, {7, 1, 1, 1, 1}, {7, 5, 7, 5, 7}, {7, 5, 7, 1, 7}};
    static const std::array<std::uint8_t, 5> dot{0, 0, 0, 0, 2}, minus{0, 0, 7, 0, 0}, plus{0, 2, 7, 2, 0},
        colon{0, 2, 0, 2, 0}, e{0, 7, 7, 4, 7}, l{6, 2, 2, 2, 7}, o{0, 7, 5, 5, 7}, s{0, 7, 6, 3, 7},
        t{2, 7, 2, 2, 3}, p{0, 7, 5, 7, 4}, a{0, 6, 3, 5, 7}, r{0, 5, 6, 4, 4}, n{0, 6, 5, 5, 5},
        g{0, 7, 5, 7, 1}, m{0, 7, 7, 5, 5}, v{0, 5, 5, 5, 2}, i{2, 0, 2, 2, 2}, c{0, 7, 4, 4, 7}, space{0, 0, 0, 0, 0};
    if (ch >= '0' && ch <= '9') return digits[ch - '0'];
    switch (ch) {
      case '.': return dot;
      case '-': return minus;
      case '+': return plus;
      case ':': return colon;
      case 'e': return e;
      case 'c': return c;
      case 'l': return l;
      case 'o': return o;
      case 's': return s;
      case 't': return t;
      case 'p': return p;
      case 'a': return a;
      case 'r': return r;
      case 'n': return n;
      case 'g': return g;
      case 'm': return m;
      case 'v': return v;
      case 'i': return i;
      default: return space;
    }
  }
  tensor<std::uint8_t> pixels_;
};

inline std::string short_number(double v) {
  char buf[32];
  if (v != 0.0 && (std::abs(v) < 1e-2 || std::abs(v) >= 1e4)) std::snprintf(buf, sizeof buf, "%.0e", v);
  else std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// Loss per step on a log scale: the raw values as faint dots, a moving average of
// `window` steps as a bold line; axes with decade ticks and step ticks.
inline canvas loss_curve(const std::vector<std::int64_t>& steps, const std::vector<double>& loss, int window = 25) {
  throw_if<value_error>(steps.size() != loss.size() || steps.empty(), "loss_curve: ", steps.size(), " steps and ",
                        loss.size(), " losses (need the same, >= 1)");
  const std::int64_t w = 720, h = 420, left = 80, right = 20, top = 30, bottom = 50;
  canvas c(h, w);
  double lo = 1e300, hi = 0.0;
  for (double v : loss)
    if (v > 0 && std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!(hi > 0)) lo = 1e-3, hi = 1;
  double log_lo = std::floor(std::log10(lo)), log_hi = std::ceil(std::log10(hi));
  if (log_hi <= log_lo) log_hi = log_lo + 1;
  const double s0 = static_cast<double>(steps.front()), s1 = std::max(static_cast<double>(steps.back()), s0 + 1);
  const double pw = static_cast<double>(w - left - right), ph = static_cast<double>(h - top - bottom);
  auto px = [&](double s) { return static_cast<double>(left) + (s - s0) / (s1 - s0) * pw; };
  auto py = [&](double v) {
    const double lv = std::log10(std::max(v, 1e-300));
    return static_cast<double>(top) + (log_hi - lv) / (log_hi - log_lo) * ph;
  };
  const rgb axis{40, 40, 40}, grid{225, 225, 225}, faint{170, 190, 230}, bold{20, 60, 170};
  for (double d = log_lo; d <= log_hi + 1e-9; d += 1) {
    const double y = py(std::pow(10.0, d));
    c.line(y, static_cast<double>(left), y, static_cast<double>(w - right), grid);
    const std::string label = short_number(std::pow(10.0, d));
    c.text(static_cast<std::int64_t>(y) - 5, left - 8 - canvas::text_width(label), label, axis);
  }
  for (int k = 0; k <= 4; ++k) {
    const double s = s0 + (s1 - s0) * k / 4.0, x = px(s);
    c.line(static_cast<double>(top), x, static_cast<double>(h - bottom), x, grid);
    const std::string label = std::to_string(static_cast<std::int64_t>(std::lround(s)));
    c.text(h - bottom + 8, static_cast<std::int64_t>(x) - canvas::text_width(label) / 2, label, axis);
  }
  for (std::size_t i = 0; i < loss.size(); ++i)
    if (loss[i] > 0 && std::isfinite(loss[i]))
      c.fill(static_cast<std::int64_t>(py(loss[i])), static_cast<std::int64_t>(px(static_cast<double>(steps[i]))), 2, 2,
             faint);
  // Moving average over the last `window` finite points, in log space (the plot's scale).
  double prev_x = 0, prev_y = 0, sum = 0;
  std::vector<double> recent;
  for (std::size_t i = 0; i < loss.size(); ++i) {
    if (!(loss[i] > 0 && std::isfinite(loss[i]))) continue;
    recent.push_back(std::log(loss[i]));
    sum += recent.back();
    if (recent.size() > static_cast<std::size_t>(window)) sum -= recent[recent.size() - 1 - static_cast<std::size_t>(window)];
    const double avg = std::exp(sum / static_cast<double>(std::min<std::size_t>(recent.size(), static_cast<std::size_t>(window))));
    const double x = px(static_cast<double>(steps[i])), y = py(avg);
    if (recent.size() > 1) c.line(prev_y, prev_x, y, x, bold, 2);
    prev_x = x, prev_y = y;
  }
  c.line(static_cast<double>(top), static_cast<double>(left), static_cast<double>(h - bottom), static_cast<double>(left), axis);
  c.line(static_cast<double>(h - bottom), static_cast<double>(left), static_cast<double>(h - bottom), static_cast<double>(w - right), axis);
  c.text(8, left, "training loss", axis);
  c.text(h - 18, w / 2 - canvas::text_width("step") / 2, "step", axis);
  return c;
}

// A grid of rows of equally sized tiles. Each tile is [H, W] float, mapped to colour by a
// palette on [lo, hi].
enum class palette { grey, heat };

inline rgb palette_colour(palette p, double v) {
  v = std::clamp(v, 0.0, 1.0);
  if (p == palette::grey) {
    const auto g = static_cast<std::uint8_t>(std::lround(255.0 * v));
    return {g, g, g};
  }
  // black → red → yellow → white
  const double r = std::clamp(3.0 * v, 0.0, 1.0), g = std::clamp(3.0 * v - 1.0, 0.0, 1.0),
               b = std::clamp(3.0 * v - 2.0, 0.0, 1.0);
  return {static_cast<std::uint8_t>(std::lround(255 * r)), static_cast<std::uint8_t>(std::lround(255 * g)),
          static_cast<std::uint8_t>(std::lround(255 * b))};
}

struct grid_tile {
  std::vector<float> values;  // H·W
  double lo = 0.0, hi = 1.0;
  palette colours = palette::grey;
};

// rows[r] = tiles of row r (rows may differ in length); headers label the columns.
inline canvas tile_grid(const std::vector<std::vector<grid_tile>>& rows, std::int64_t tile_h, std::int64_t tile_w,
                        int scale, const std::vector<std::string>& headers = {}) {
  throw_if<value_error>(rows.empty() || tile_h < 1 || tile_w < 1 || scale < 1, "tile_grid: empty grid");
  std::size_t cols = 0;
  for (const auto& r : rows) cols = std::max(cols, r.size());
  const std::int64_t gap = 4, header = headers.empty() ? 0 : 18;
  const std::int64_t th = tile_h * scale, tw = tile_w * scale;
  canvas c(header + static_cast<std::int64_t>(rows.size()) * (th + gap) + gap,
           static_cast<std::int64_t>(cols) * (tw + gap) + gap, {255, 255, 255});
  for (std::size_t k = 0; k < headers.size() && k < cols; ++k)
    c.text(4, gap + static_cast<std::int64_t>(k) * (tw + gap), headers[k], {40, 40, 40});
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (std::size_t k = 0; k < rows[r].size(); ++k) {
      const grid_tile& t = rows[r][k];
      throw_if<shape_error>(static_cast<std::int64_t>(t.values.size()) != tile_h * tile_w, "tile_grid: tile has ",
                            t.values.size(), " values, expected ", tile_h * tile_w);
      const std::int64_t y0 = header + gap + static_cast<std::int64_t>(r) * (th + gap);
      const std::int64_t x0 = gap + static_cast<std::int64_t>(k) * (tw + gap);
      const double span = t.hi > t.lo ? t.hi - t.lo : 1.0;
      for (std::int64_t y = 0; y < tile_h; ++y)
        for (std::int64_t x = 0; x < tile_w; ++x)
          c.fill(y0 + y * scale, x0 + x * scale, scale, scale,
                 palette_colour(t.colours, (t.values[static_cast<std::size_t>(y * tile_w + x)] - t.lo) / span));
    }
  return c;
}

inline grid_tile tile_of(const float* v, std::int64_t plane, double lo, double hi, palette p = palette::grey) {
  return {std::vector<float>(v, v + plane), lo, hi, p};
}
inline grid_tile tile_of(const std::uint8_t* v, std::int64_t plane) {
  grid_tile t{std::vector<float>(static_cast<std::size_t>(plane)), 0.0, 1.0, palette::grey};
  for (std::int64_t i = 0; i < plane; ++i) t.values[static_cast<std::size_t>(i)] = v[i];
  return t;
}

// One image: row 1 = image | annotations | mean | variance, then the samples 8 per row.
inline canvas image_grid(const sample_inputs& in, const sample_result& r, std::int64_t k) {
  const std::int64_t n = r.masks.size(1), h = r.masks.size(2), w = r.masks.size(3), plane = h * w;
  const data::case_ref c = in.cases[static_cast<std::size_t>(k)];
  std::vector<std::vector<grid_tile>> rows(1);
  rows[0].push_back(tile_of(c.image.data(), plane, 0.0, 1.0));
  if (in.has_annotations)
    for (std::int64_t a = 0; a < c.annotations(); ++a) rows[0].push_back(tile_of(c.masks.data() + a * plane, plane));
  rows[0].push_back(tile_of(r.mean.data() + k * plane, plane, 0.0, 1.0, palette::heat));
  rows[0].push_back(tile_of(r.variance.data() + k * plane, plane, 0.0, 0.25, palette::heat));
  for (std::int64_t j = 0; j < n; ++j) {
    if (j % 8 == 0) rows.emplace_back();
    rows.back().push_back(tile_of(r.masks.data() + (k * n + j) * plane, plane));
  }
  return tile_grid(rows, h, w, h <= 64 ? 3 : 2);
}

// All images, one row each: image | annotations | up to 6 samples | mean | variance.
inline canvas overview_grid(const sample_inputs& in, const sample_result& r) {
  const std::int64_t b = r.masks.size(0), n = r.masks.size(1), h = r.masks.size(2), w = r.masks.size(3);
  const std::int64_t plane = h * w, shown = std::min<std::int64_t>(n, 6);
  std::vector<std::vector<grid_tile>> rows;
  std::vector<std::string> headers{"image"};
  const std::int64_t m = in.has_annotations ? in.cases[0].annotations() : 0;
  for (std::int64_t a = 0; a < m; ++a) headers.push_back(a == 0 ? "annotations" : "");
  for (std::int64_t j = 0; j < shown; ++j) headers.push_back(j == 0 ? "samples" : "");
  headers.push_back("mean");
  headers.push_back("variance");
  for (std::int64_t k = 0; k < b; ++k) {
    const data::case_ref c = in.cases[static_cast<std::size_t>(k)];
    auto& row = rows.emplace_back();
    row.push_back(tile_of(c.image.data(), plane, 0.0, 1.0));
    for (std::int64_t a = 0; a < m; ++a)
      row.push_back(a < c.annotations() ? tile_of(c.masks.data() + a * plane, plane)
                                        : grid_tile{std::vector<float>(static_cast<std::size_t>(plane), 1.0f)});
    for (std::int64_t j = 0; j < shown; ++j) row.push_back(tile_of(r.masks.data() + (k * n + j) * plane, plane));
    row.push_back(tile_of(r.mean.data() + k * plane, plane, 0.0, 1.0, palette::heat));
    row.push_back(tile_of(r.variance.data() + k * plane, plane, 0.0, 0.25, palette::heat));
  }
  return tile_grid(rows, h, w, 2, headers);
}

}  // namespace ambiseg::apps
