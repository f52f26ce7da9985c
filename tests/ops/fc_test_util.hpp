// Helpers for the full-covariance latent tests: random Cholesky factors and an independent
// dense reference (Σ = L·Lᵀ, its inverse by Gauss-Jordan, log det by elimination), so the
// expected densities and KLs do not reuse the ops' triangular solves.
#pragma once

#include "ops_test_util.hpp"

#include <cmath>
#include <numbers>
#include <vector>

namespace fc_test {

using namespace ambiseg;
using matrix = std::vector<std::vector<double>>;

// [B, K, D, D] with a positive diagonal (0.6 … 3), off-diagonal N(0, off²) below it and
// garbage above it (the ops must never read the upper triangle).
inline tensor<double> random_tril(shape s, rng& r, double off = 0.5) {
  tensor<double> l(s);
  const std::int64_t d = s[3];
  for (std::int64_t e = 0; e < l.numel(); ++e) {
    const std::int64_t c = e % d, i = (e / d) % d;
    const double x = r.normal();
    l[e] = i == c ? 0.6 + std::exp(0.4 * x) : (i > c ? off * x : 7.0 + x);
  }
  return l;
}

// Row (b, k) of an [B, K, D, D] tensor as a dense lower-triangular matrix.
inline matrix lower_of(const tensor<double>& l, std::int64_t row) {
  const std::int64_t d = l.size(l.rank() - 1);
  matrix m(d, std::vector<double>(d, 0.0));
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j <= i; ++j) m[i][j] = l[(row * d + i) * d + j];
  return m;
}

inline matrix covariance(const matrix& l) {
  const std::size_t d = l.size();
  matrix s(d, std::vector<double>(d, 0.0));
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t j = 0; j < d; ++j)
      for (std::size_t k = 0; k < d; ++k) s[i][j] += l[i][k] * l[j][k];
  return s;
}

// Gauss-Jordan with partial pivoting; also returns log|det|.
inline matrix inverse(matrix a, double* log_det = nullptr) {
  const std::size_t d = a.size();
  matrix inv(d, std::vector<double>(d, 0.0));
  for (std::size_t i = 0; i < d; ++i) inv[i][i] = 1.0;
  double ld = 0.0;
  for (std::size_t c = 0; c < d; ++c) {
    std::size_t p = c;
    for (std::size_t r = c + 1; r < d; ++r)
      if (std::abs(a[r][c]) > std::abs(a[p][c])) p = r;
    std::swap(a[p], a[c]);
    std::swap(inv[p], inv[c]);
    const double piv = a[c][c];
    ld += std::log(std::abs(piv));
    for (std::size_t j = 0; j < d; ++j) {
      a[c][j] /= piv;
      inv[c][j] /= piv;
    }
    for (std::size_t r = 0; r < d; ++r) {
      if (r == c) continue;
      const double f = a[r][c];
      for (std::size_t j = 0; j < d; ++j) {
        a[r][j] -= f * a[c][j];
        inv[r][j] -= f * inv[c][j];
      }
    }
  }
  if (log_det) *log_det = ld;
  return inv;
}

// log N(z; mu, Σ).
inline double mvn_log_density(const std::vector<double>& z, const std::vector<double>& mu,
                              const matrix& sigma) {
  double ld = 0.0;
  const matrix inv = inverse(sigma, &ld);
  const std::size_t d = z.size();
  double q = 0.0;
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t j = 0; j < d; ++j) q += (z[i] - mu[i]) * inv[i][j] * (z[j] - mu[j]);
  return -0.5 * (q + ld + static_cast<double>(d) * std::log(2 * std::numbers::pi));
}

// KL(N(mq, Sq) ‖ N(mp, Sp)) = ½(tr(Sp⁻¹Sq) + (mp − mq)ᵀSp⁻¹(mp − mq) − D + ln det Sp − ln det Sq).
inline double mvn_kl(const std::vector<double>& mq, const matrix& sq, const std::vector<double>& mp,
                     const matrix& sp) {
  double ldp = 0.0, ldq = 0.0;
  const matrix ip = inverse(sp, &ldp);
  inverse(sq, &ldq);
  const std::size_t d = mq.size();
  double tr = 0.0, q = 0.0;
  for (std::size_t i = 0; i < d; ++i)
    for (std::size_t j = 0; j < d; ++j) {
      tr += ip[i][j] * sq[j][i];
      q += (mp[i] - mq[i]) * ip[i][j] * (mp[j] - mq[j]);
    }
  return 0.5 * (tr + q - static_cast<double>(d) + ldp - ldq);
}

inline std::vector<double> row_of(const tensor<double>& v, std::int64_t row) {
  const std::int64_t d = v.size(v.rank() - 1);
  return std::vector<double>(v.data() + row * d, v.data() + (row + 1) * d);
}

}  // namespace fc_test
