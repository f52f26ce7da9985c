// ambiseg/metrics/hungarian.hpp — minimum-cost assignment (Hungarian / Jonker–Volgenant).
//
//   solve_assignment(cost [rows, cols]) -> assignment
//
// The shortest-augmenting-path form with row/column potentials: each of the
// min(rows, cols) rows is added by one Dijkstra-like sweep over the columns, O(n²·m)
// in all, exact on double costs. A rectangular problem assigns every row of the smaller
// side; the larger side keeps min(rows, cols) of its items.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/overlap.hpp"

namespace ambiseg::metrics {

struct assignment {
  std::vector<std::int64_t> col_of_row;  // -1 for rows left out (only when rows > cols)
  double cost = 0.0;                     // sum of the chosen entries
};

namespace detail {

// rows <= cols. Indices are 1-based inside; column 0 is the virtual source of each sweep.
inline std::vector<std::int64_t> assign_rows(const dmatrix& c) {
  const std::size_t n = static_cast<std::size_t>(c.rows), m = static_cast<std::size_t>(c.cols);
  const double inf = std::numeric_limits<double>::infinity();
  auto cost = [&](std::size_t i, std::size_t j) { return c.values[(i - 1) * m + (j - 1)]; };
  std::vector<double> u(n + 1, 0.0), v(m + 1, 0.0), min_slack(m + 1);
  std::vector<std::size_t> row_of_col(m + 1, 0), way(m + 1, 0);
  std::vector<char> used(m + 1);
  for (std::size_t i = 1; i <= n; ++i) {
    row_of_col[0] = i;
    std::size_t j0 = 0;
    std::fill(min_slack.begin(), min_slack.end(), inf);
    std::fill(used.begin(), used.end(), 0);
    do {  // grow the shortest-path tree by the column of least reduced cost
      used[j0] = 1;
      const std::size_t i0 = row_of_col[j0];
      double delta = inf;
      std::size_t j1 = 0;
      for (std::size_t j = 1; j <= m; ++j) {
        if (used[j]) continue;
        const double reduced = cost(i0, j) - u[i0] - v[j];
        if (reduced < min_slack[j]) { min_slack[j] = reduced; way[j] = j0; }
        if (min_slack[j] < delta) { delta = min_slack[j]; j1 = j; }
      }
      for (std::size_t j = 0; j <= m; ++j) {
        if (used[j]) { u[row_of_col[j]] += delta; v[j] -= delta; }
        else min_slack[j] -= delta;
      }
      j0 = j1;
    } while (row_of_col[j0] != 0);
    do {  // flip the augmenting path back to the source
      const std::size_t j1 = way[j0];
      row_of_col[j0] = row_of_col[j1];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<std::int64_t> col_of_row(n, -1);
  for (std::size_t j = 1; j <= m; ++j)
    if (row_of_col[j] != 0) col_of_row[row_of_col[j] - 1] = static_cast<std::int64_t>(j - 1);
  return col_of_row;
}

}  // namespace detail

inline assignment solve_assignment(const dmatrix& cost) {
  for (double x : cost.values)
    throw_if<value_error>(!std::isfinite(x), "solve_assignment: cost matrix holds a non-finite value (", x, ")");
  assignment a;
  if (cost.rows <= cost.cols) {
    a.col_of_row = detail::assign_rows(cost);
  } else {  // transpose so that the smaller side is the rows
    dmatrix t(cost.cols, cost.rows);
    for (std::int64_t i = 0; i < cost.rows; ++i)
      for (std::int64_t j = 0; j < cost.cols; ++j) t(j, i) = cost(i, j);
    const auto row_of_col = detail::assign_rows(t);
    a.col_of_row.assign(static_cast<std::size_t>(cost.rows), -1);
    for (std::size_t j = 0; j < row_of_col.size(); ++j)
      a.col_of_row[static_cast<std::size_t>(row_of_col[j])] = static_cast<std::int64_t>(j);
  }
  for (std::int64_t i = 0; i < cost.rows; ++i)
    if (a.col_of_row[static_cast<std::size_t>(i)] >= 0) a.cost += cost(i, a.col_of_row[static_cast<std::size_t>(i)]);
  return a;
}

}  // namespace ambiseg::metrics
