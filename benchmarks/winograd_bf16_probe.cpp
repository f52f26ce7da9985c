// Would a bf16 Winograd convolution pay on this CPU? The forward of one 3×3 layer with the
// transformed input and filters rounded to bf16 channel pairs, multiplied by AVX512-BF16's
// vdpbf16ps with float sums, against the direct convolution in double: its error, and its
// speed (direct-equivalent GFLOP/s: the direct method's 2·9·Ci·Co per pixel, per second).
// docs/benchmarks.md, "bf16 on the CPU", reports what it printed.
//
//   winograd_bf16_probe        (one thread is what the figures use: OMP_NUM_THREADS=1)
//
// The rounding is a separate pass here ("pack"); the "fused" rate leaves it out, which is
// what a transform writing bf16 pairs directly would cost at best. The same transforms with
// the float products of the library's path (OpenBLAS) give the fp32 rate beside it.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "ambiseg/core/random.hpp"
#include "ambiseg/ops/cpu/conv2d_winograd.hpp"
#include "ambiseg/ops/cpu/gemm.hpp"

using namespace ambiseg;
using namespace ambiseg::ops::cpu_kernels;

namespace {

using bf16_detail::mr;
using bf16_detail::nr;

using seconds = std::chrono::duration<double>;

template <class F>
void probe(std::int64_t n, std::int64_t ci, std::int64_t hw, std::int64_t co) {
  constexpr int a = F::alpha;
  const conv_geometry g{n, ci, hw, hw, co, 3, 1, 1, hw, hw};
  const auto l = make_winograd_layout<F>(g, 1 << 20, sizeof(float));
  const std::int64_t t_cap = (l.max_tiles + nr - 1) / nr * nr, k2n = ci / 2, panels = (co + mr - 1) / mr;
  rng gen(1);
  std::vector<float> x(n * ci * hw * hw), w(co * ci * 9), y(n * co * hw * hw);
  for (auto& v : x) v = static_cast<float>(gen.normal());
  for (auto& v : w) v = static_cast<float>(gen.normal() * std::sqrt(2.0 / (9.0 * ci)));
  std::vector<double> exact(y.size());  // direct convolution in double
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t o = 0; o < co; ++o)
      for (std::int64_t i = 0; i < hw; ++i)
        for (std::int64_t j = 0; j < hw; ++j) {
          double s = 0;
          for (std::int64_t c = 0; c < ci; ++c)
            for (int kh = 0; kh < 3; ++kh)
              for (int kw = 0; kw < 3; ++kw) {
                const std::int64_t hh = i + kh - 1, ww = j + kw - 1;
                if (hh < 0 || hh >= hw || ww < 0 || ww >= hw) continue;
                s += double(x[((b * ci + c) * hw + hh) * hw + ww]) * w[((o * ci + c) * 3 + kh) * 3 + kw];
              }
          exact[((b * co + o) * hw + i) * hw + j] = s;
        }
  // U, rounded to bf16 pairs along Ci: u_pairs[ξ][panel][r][k2]
  std::vector<float> u(a * a * winograd_plane(co, ci)), flipped(co * ci * 9);
  winograd_filter_transform<F>(w.data(), co, ci, false, u.data(), flipped.data());
  std::vector<std::uint32_t> u_pairs(a * a * panels * mr * k2n, 0);
  for (int xi = 0; xi < a * a; ++xi)
    for (std::int64_t o = 0; o < co; ++o)
      for (std::int64_t k2 = 0; k2 < k2n; ++k2) {
        const float* row = u.data() + xi * winograd_plane(co, ci) + o * ci;
        u_pairs[((xi * panels + o / mr) * mr + o % mr) * k2n + k2] = bf16_pair(row[2 * k2], row[2 * k2 + 1]);
      }
  std::vector<float> v(l.v_elems), m(a * a * winograd_plane(co, t_cap)), tmp(l.tmp_elems);
  std::vector<std::uint32_t> v_pairs(a * a * k2n * t_cap);
  double t_input = 0, t_pack = 0, t_gemm = 0, t_output = 0, t_fp32 = 0;
  for (int rep = 0; rep < 4; ++rep) {  // the first repetition touches the buffers, untimed
    if (rep == 1) t_input = t_pack = t_gemm = t_output = t_fp32 = 0;
    for (std::int64_t chunk = 0; chunk < l.chunks; ++chunk) {
      const std::int64_t r0 = chunk * l.rows_per_chunk, r1 = std::min(l.rows, r0 + l.rows_per_chunk);
      const std::int64_t tiles = (r1 - r0) * l.tw, padded = (tiles + nr - 1) / nr * nr;
      const auto c0 = std::chrono::steady_clock::now();
      winograd_input_chunk<F>(x.data(), g, l, r0, r1, v.data(), tmp.data());
      const auto c1 = std::chrono::steady_clock::now();
      for (int xi = 0; xi < a * a; ++xi)
        for (std::int64_t k2 = 0; k2 < k2n; ++k2) {
          const float* v0 = v.data() + xi * winograd_plane(ci, tiles) + 2 * k2 * tiles;
          std::uint32_t* dst = v_pairs.data() + (xi * k2n + k2) * padded;
          for (std::int64_t t = 0; t < tiles; ++t) dst[t] = bf16_pair(v0[t], v0[tiles + t]);
          for (std::int64_t t = tiles; t < padded; ++t) dst[t] = 0;
        }
      const auto c2 = std::chrono::steady_clock::now();
#if AMBISEG_HAVE_BF16_KERNELS
      alignas(64) float tile[mr * nr];
      for (int xi = 0; xi < a * a; ++xi) {
        float* mx = m.data() + xi * winograd_plane(co, tiles);
        for (std::int64_t tp = 0; tp < padded; tp += nr)
          for (std::int64_t p = 0; p < panels; ++p) {
            bf16_detail::micro_kernel(k2n, u_pairs.data() + (xi * panels + p) * mr * k2n,
                                      v_pairs.data() + xi * k2n * padded + tp, padded, tile);
            bf16_detail::store_tile(tile, std::min(mr, co - p * mr), std::min(nr, tiles - tp), 1.f, 0.f, true,
                                    mx + p * mr * tiles + tp, tiles);
          }
      }
#endif
      const auto c3 = std::chrono::steady_clock::now();
      winograd_output_chunk<F>(m.data(), static_cast<const float*>(nullptr), y.data(), g, l, r0, r1, tmp.data());
      const auto c4 = std::chrono::steady_clock::now();
      for (int xi = 0; xi < a * a; ++xi)  // the float products, for the fp32 rate
        gemm(trans::no, trans::no, co, tiles, ci, 1.f, u.data() + xi * winograd_plane(co, ci), ci,
             v.data() + xi * winograd_plane(ci, tiles), tiles, 0.f, m.data() + xi * winograd_plane(co, tiles), tiles);
      const auto c5 = std::chrono::steady_clock::now();
      t_fp32 += seconds(c5 - c4).count();
      t_input += seconds(c1 - c0).count();
      t_pack += seconds(c2 - c1).count();
      t_gemm += seconds(c3 - c2).count();
      t_output += seconds(c4 - c3).count();
    }
  }
  double err = 0, peak = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    err = std::max(err, std::abs(y[i] - exact[i]));
    peak = std::max(peak, std::abs(exact[i]));
  }
  const double flop = 2.0 * n * co * ci * hw * hw * 9, reps = 3;
  std::printf("F(%dx%d,3x3) %3lld->%3lld ch at %3lld^2: error %.1e of the peak; ms per forward: input %.2f, "
              "pack %.2f, products %.2f (fp32 %.2f), output %.2f; direct-equivalent GFLOP/s %.0f (fused %.0f; "
              "fp32 %.0f)\n",
              F::m, F::m, static_cast<long long>(ci), static_cast<long long>(co), static_cast<long long>(hw),
              err / peak, 1e3 * t_input / reps, 1e3 * t_pack / reps, 1e3 * t_gemm / reps, 1e3 * t_fp32 / reps,
              1e3 * t_output / reps, flop * reps / (t_input + t_pack + t_gemm + t_output) * 1e-9,
              flop * reps / (t_input + t_gemm + t_output) * 1e-9, flop * reps / (t_input + t_fp32 + t_output) * 1e-9);
}

}  // namespace

int main() {
  if (!cpu_has_avx512_bf16()) {
    std::fprintf(stderr, "winograd_bf16_probe: this CPU lacks AVX512-BF16\n");
    return 2;
  }
  std::printf("# batch 8, one image chunked as conv2d_winograd.hpp does; error: max |y - exact| / max |exact|\n");
  probe<winograd_f4>(8, 32, 128, 32);
  probe<winograd_f2>(8, 32, 128, 32);
  probe<winograd_f4>(8, 64, 32, 64);
  probe<winograd_f2>(8, 64, 32, 64);
  probe<winograd_f4>(8, 128, 16, 128);
  probe<winograd_f2>(8, 128, 16, 128);
  return 0;
}
