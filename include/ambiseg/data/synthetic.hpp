// ambiseg/data/synthetic.hpp — an embedded data set of ambiguous lesions with a known
// annotation distribution (the default data set everywhere: no files, any size).
//
// Image i (its own rng stream, so images are independent of each other and of order):
//   background  base ∈ [0.25, 0.35] + Σ_{5 waves} a·sin(k·(x, y) + φ), a ∈ [0.02, 0.04],
//               0.5–3 cycles per image, plus white noise of std noise_std (Irwin–Hall,
//               nearly normal): textured, smooth
//               at the lesion scale, and (noise tails aside) in [0.05, 0.55], so a lesion of
//               contrast ≤ 0.45 stays below 1 and nothing is lost to clamping
//   lesions     1–3 non-overlapping ellipses (semi-axes 5–12 % of the size, any angle)
//               brightened by a contrast c ∈ [min_contrast, max_contrast] with a soft rim
// Annotator model (the oracle, exact by construction):
//   each lesion is marked independently with probability
//       p(c) = 0.5 + 0.5 · (c − min_contrast) / (max_contrast − min_contrast)
//   (faint → 50 %, strong → 100 %); a marked lesion's outline is the ellipse with a random
//   radial perturbation r(θ) = s · (1 + Σ_{k=2..4} a_k cos(kθ + φ_k)), s ~ 1 + N(0, (j/2)²),
//   a_k ~ N(0, (j/k)²), j = boundary_jitter, total perturbation clamped to ±30 %.
// So faint lesions are truly ambiguous (present in about half of the annotations) and the
// boundaries vary a little, as between radiologists.
//
//   synthetic_lesions gen({.size = 64, .n_annotators = 4, .seed = 1});
//   gen.image(i)                  [1, S, S] float in [0, 1]
//   gen.lesions(i)                the lesions with their annotation probabilities
//   gen.annotations(i, m, rng)    m fresh annotations [m, S, S] (the oracle)
//   gen.make_case(i)              image + the n_annotators fixed annotations of image i
//   gen.make_cases(first, count)  a case_set
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <string>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/data/dataset.hpp"

namespace ambiseg::data {

struct synthetic_config {
  std::int64_t size = 64;          // S; 64 and 128 are the intended sizes (16…1024 accepted)
  std::int64_t n_annotators = 4;   // fixed annotations per case in make_case()
  std::uint64_t seed = 0;
  int min_lesions = 1, max_lesions = 3;
  double min_contrast = 0.06, max_contrast = 0.45;
  double boundary_jitter = 0.08;
  double noise_std = 0.03;
};

struct synthetic_lesion {
  double cy, cx;        // centre, pixels
  double ry, rx;        // semi-axes, pixels
  double angle;         // radians, rotation of the x semi-axis
  double contrast;      // added brightness
  double p_annotated;   // probability that an annotator marks it
};

class synthetic_lesions {
 public:
  explicit synthetic_lesions(synthetic_config config = {}) : cfg_(config) {
    throw_if<value_error>(cfg_.size < 16 || cfg_.size > 1024, "synthetic_lesions: size ",
                          cfg_.size, " outside [16, 1024]");
    throw_if<value_error>(cfg_.n_annotators < 1, "synthetic_lesions: n_annotators ",
                          cfg_.n_annotators);
    throw_if<value_error>(cfg_.min_lesions < 0 || cfg_.max_lesions < cfg_.min_lesions ||
                              cfg_.max_lesions > 8,
                          "synthetic_lesions: lesion count range [", cfg_.min_lesions, ", ",
                          cfg_.max_lesions, "]");
    throw_if<value_error>(!(cfg_.min_contrast > 0 && cfg_.max_contrast > cfg_.min_contrast &&
                            cfg_.max_contrast <= 1),
                          "synthetic_lesions: contrast range [", cfg_.min_contrast, ", ",
                          cfg_.max_contrast, "]");
    throw_if<value_error>(!(cfg_.boundary_jitter >= 0 && cfg_.boundary_jitter <= 0.3),
                          "synthetic_lesions: boundary_jitter ", cfg_.boundary_jitter);
    throw_if<value_error>(!(cfg_.noise_std >= 0 && cfg_.noise_std <= 0.5),
                          "synthetic_lesions: noise_std ", cfg_.noise_std);
  }

  const synthetic_config& config() const { return cfg_; }

  double annotation_probability(double contrast) const {
    const double t = (contrast - cfg_.min_contrast) / (cfg_.max_contrast - cfg_.min_contrast);
    return 0.5 + 0.5 * std::clamp(t, 0.0, 1.0);
  }

  std::vector<synthetic_lesion> lesions(std::uint64_t i) const {
    rng g = image_stream(i);
    return draw_lesions(g);
  }

  // [1, S, S] float in [0, 1].
  tensor<float> image(std::uint64_t i) const {
    tensor<float> out(shape{1, cfg_.size, cfg_.size});
    image_into(i, out.view());
    return out;
  }

  void image_into(std::uint64_t i, tensor_view<float> out) const {
    const std::int64_t s = cfg_.size;
    expect_shape("synthetic_lesions::image_into", "out", out, shape{1, s, s});
    rng g = image_stream(i);
    const auto found = draw_lesions(g);  // first, so lesions(i) replays the same draws
    const double base = 0.25 + 0.1 * g.uniform();
    for (std::int64_t p = 0; p < s * s; ++p) out[p] = static_cast<float>(base);
    // Waves: sin(u + v) = sin u cos v + cos u sin v with u along x and v along y, so each
    // wave costs 4·S sines and one multiply-add per pixel.
    std::vector<double> su(static_cast<std::size_t>(s)), cu(su.size()), sv(su.size()), cv(su.size());
    for (int wave = 0; wave < 5; ++wave) {
      const double cycles = 0.5 + 2.5 * g.uniform();
      const double direction = 2 * std::numbers::pi * g.uniform();
      const double phase = 2 * std::numbers::pi * g.uniform();
      const double amplitude = 0.02 + 0.02 * g.uniform();
      const double k = 2 * std::numbers::pi * cycles / static_cast<double>(s);
      const double kx = k * std::cos(direction), ky = k * std::sin(direction);
      for (std::int64_t t = 0; t < s; ++t) {
        su[t] = amplitude * std::sin(kx * t + phase);
        cu[t] = amplitude * std::cos(kx * t + phase);
        sv[t] = std::sin(ky * t);
        cv[t] = std::cos(ky * t);
      }
      for (std::int64_t y = 0; y < s; ++y)
        for (std::int64_t x = 0; x < s; ++x)
          out[y * s + x] += static_cast<float>(su[x] * cv[y] + cu[x] * sv[y]);
    }
    for (const auto& l : found) {
      const double rim = 1.5 / std::min(l.rx, l.ry);  // soft edge about 1.5 pixels wide
      for_each_pixel_near(l, 1.1, [&](std::int64_t y, std::int64_t x, double a, double b) {
        const double rho = std::sqrt(a * a + b * b);
        const double weight = std::clamp((1.0 - rho) / rim + 0.5, 0.0, 1.0);
        out[y * s + x] += static_cast<float>(l.contrast * weight);
      });
    }
    // Pixel noise: the sum of four 16-bit uniforms from one 64-bit draw (Irwin–Hall, n = 4),
    // rescaled to unit variance — close to normal and ten times cheaper than Box–Muller.
    const double noise_scale = cfg_.noise_std * std::sqrt(3.0) / 65536.0;  // sd of the sum: 65536/√3
    for (std::int64_t p = 0; p < s * s; ++p) {
      const std::uint64_t r = g();
      const double sum = static_cast<double>((r & 0xffff) + ((r >> 16) & 0xffff) +
                                             ((r >> 32) & 0xffff) + (r >> 48));
      const double v = out[p] + noise_scale * (sum - 2.0 * 65535.0);
      out[p] = static_cast<float>(std::clamp(v, 0.0, 1.0));
    }
  }

  // m fresh annotations of image i drawn from the annotator model: [m, S, S] 0/1.
  tensor<std::uint8_t> annotations(std::uint64_t i, std::int64_t m, rng& g) const {
    throw_if<value_error>(m < 1, "synthetic_lesions::annotations: m = ", m);
    tensor<std::uint8_t> out = tensor<std::uint8_t>::zeros(shape{m, cfg_.size, cfg_.size});
    const auto found = lesions(i);
    for (std::int64_t k = 0; k < m; ++k) annotate(found, g, out.data() + k * cfg_.size * cfg_.size);
    return out;
  }

  // Image i with its n_annotators fixed annotations (their own stream of (seed, i)).
  case_data make_case(std::uint64_t i) const {
    rng g = rng::derive(cfg_.seed, 2 * i + 1);
    return {"synthetic_" + std::to_string(i), image(i), annotations(i, cfg_.n_annotators, g)};
  }

  case_set make_cases(std::uint64_t first, std::uint64_t count) const {
    case_set out;
    for (std::uint64_t i = first; i < first + count; ++i) out.add(make_case(i));
    return out;
  }

 private:
  rng image_stream(std::uint64_t i) const { return rng::derive(cfg_.seed, 2 * i); }

  std::vector<synthetic_lesion> draw_lesions(rng& g) const {
    const double s = static_cast<double>(cfg_.size);
    const int wanted = cfg_.min_lesions +
                       static_cast<int>(g.below(static_cast<std::uint64_t>(cfg_.max_lesions - cfg_.min_lesions + 1)));
    std::vector<synthetic_lesion> out;
    // Rejection sampling with a fixed number of tries keeps the stream length bounded and
    // deterministic; a crowded draw simply yields fewer lesions.
    for (int attempt = 0; attempt < 64 && static_cast<int>(out.size()) < wanted; ++attempt) {
      synthetic_lesion l;
      l.ry = s * (0.05 + 0.07 * g.uniform());
      l.rx = s * (0.05 + 0.07 * g.uniform());
      l.angle = std::numbers::pi * g.uniform();
      const double reach = 1.6 * std::max(l.rx, l.ry) + 2;  // beyond the largest outline (1.56)
      l.cy = reach + (s - 1 - 2 * reach) * g.uniform();
      l.cx = reach + (s - 1 - 2 * reach) * g.uniform();
      l.contrast = cfg_.min_contrast + (cfg_.max_contrast - cfg_.min_contrast) * g.uniform();
      l.p_annotated = annotation_probability(l.contrast);
      bool apart = true;
      for (const auto& o : out) {
        const double gap = 1.6 * (std::max(l.rx, l.ry) + std::max(o.rx, o.ry)) + 3;
        apart = apart && std::hypot(l.cy - o.cy, l.cx - o.cx) > gap;
      }
      if (apart) out.push_back(l);
    }
    return out;
  }

  // Calls f(y, x, a, b) for the pixels within `reach` semi-axes of the lesion, with (a, b)
  // the pixel in the lesion's frame scaled so that the ellipse is the unit circle.
  template <class F>
  void for_each_pixel_near(const synthetic_lesion& l, double reach, F&& f) const {
    const std::int64_t s = cfg_.size;
    const double r = reach * std::max(l.rx, l.ry) + 1;
    const auto y0 = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::floor(l.cy - r)));
    const auto y1 = std::min<std::int64_t>(s - 1, static_cast<std::int64_t>(std::ceil(l.cy + r)));
    const auto x0 = std::max<std::int64_t>(0, static_cast<std::int64_t>(std::floor(l.cx - r)));
    const auto x1 = std::min<std::int64_t>(s - 1, static_cast<std::int64_t>(std::ceil(l.cx + r)));
    const double ca = std::cos(l.angle), sa = std::sin(l.angle);
    for (std::int64_t y = y0; y <= y1; ++y)
      for (std::int64_t x = x0; x <= x1; ++x) {
        const double dx = static_cast<double>(x) - l.cx, dy = static_cast<double>(y) - l.cy;
        f(y, x, (dx * ca + dy * sa) / l.rx, (-dx * sa + dy * ca) / l.ry);
      }
  }

  void annotate(const std::vector<synthetic_lesion>& found, rng& g, std::uint8_t* out) const {
    const std::int64_t s = cfg_.size;
    const double j = cfg_.boundary_jitter;
    for (const auto& l : found) {
      // Draw everything for this lesion first: the stream length does not depend on the
      // outcome, so annotation k of a seed is the same whatever m is.
      const bool marked = g.uniform() < l.p_annotated;
      const double scale = std::clamp(1.0 + 0.5 * j * g.normal(), 0.8, 1.2);
      double amp[3], cphi[3], sphi[3];
      double total = 0;
      for (int h = 0; h < 3; ++h) {
        amp[h] = j / (h + 2) * g.normal();
        const double phi = 2 * std::numbers::pi * g.uniform();
        cphi[h] = std::cos(phi);
        sphi[h] = std::sin(phi);
        total += std::abs(amp[h]);
      }
      if (total > 0.3)
        for (double& a : amp) a *= 0.3 / total;
      if (!marked) continue;
      for_each_pixel_near(l, 1.3 * 1.2 + 0.1, [&](std::int64_t y, std::int64_t x, double a, double b) {
        const double rho = std::sqrt(a * a + b * b);
        double radius = 1.0;
        if (rho > 1e-12) {
          // cos(kθ + φ) from the unit vector (a, b)/ρ by complex powers: no atan2.
          const double c1 = a / rho, s1 = b / rho;
          double ck = c1 * c1 - s1 * s1, sk = 2 * c1 * s1;  // k = 2
          for (int h = 0; h < 3; ++h) {
            radius += amp[h] * (ck * cphi[h] - sk * sphi[h]);
            const double cn = ck * c1 - sk * s1;
            sk = sk * c1 + ck * s1;
            ck = cn;
          }
        }
        if (rho < scale * radius) out[y * s + x] = 1;
      });
    }
  }

  synthetic_config cfg_;
};

}  // namespace ambiseg::data
