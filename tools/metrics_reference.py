#!/usr/bin/python3
"""Independent re-computation of the hand-worked cases in tests/metrics/ with numpy.

Run: /usr/bin/python3 tools/metrics_reference.py
HM-IoU is computed by brute force over all permutations of the lcm(n, m) repeats (no
scipy needed), GED² with both estimators straight from the definition in SPEC §8.
"""
import itertools
import math

import numpy as np


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def dice(a, b):
    den = a.sum() + b.sum()
    return 1.0 if den == 0 else 2.0 * np.logical_and(a, b).sum() / den


def ged2(S, Y, unbiased=False):
    def mean_d(A, B, skip_diag):
        vals = [1 - iou(a, b) for i, a in enumerate(A) for j, b in enumerate(B) if not (skip_diag and i == j)]
        return float(np.mean(vals))
    return 2 * mean_d(S, Y, False) - mean_d(S, S, unbiased) - mean_d(Y, Y, unbiased)


def hm_iou(S, Y):
    L = math.lcm(len(S), len(Y))
    Sr = [S[k % len(S)] for k in range(L)]
    Yr = [Y[k % len(Y)] for k in range(L)]
    table = np.array([[iou(s, y) for y in Yr] for s in Sr])
    best = max(sum(table[k, p[k]] for k in range(L)) for p in itertools.permutations(range(L)))
    return best / L


def pp(S, r):
    areas = [s.sum() for s in S]
    thr = r * max(areas)
    return [np.zeros_like(s) if s.sum() < thr else s for s in S]


def masks(pixels, sets):
    out = []
    for s in sets:
        m = np.zeros(pixels, dtype=bool)
        m[list(s)] = True
        out.append(m)
    return out


def report(name, S, Y):
    print(f"{name}: ged2 all_pairs {ged2(S, Y):.6f} unbiased "
          f"{ged2(S, Y, True) if len(S) > 1 and len(Y) > 1 else float('nan'):.6f} "
          f"dice {np.mean([dice(s, y) for s in S for y in Y]):.6f} "
          f"iou {np.mean([iou(s, y) for s in S for y in Y]):.6f} hm_iou {hm_iou(S, Y):.6f}")


def main():
    # test_metrics.cpp "GED² of a hand-computed case": 7/12, -1/4, 11/30, 7/24, 1/3
    report("ged case", masks(4, [{0, 1}, set()]), masks(4, [{0}, {0, 1, 2}]))
    # "HM-IoU with n != m": 5/6
    report("hm case", masks(3, [{0}, {1}]), masks(3, [{0}, {1}, {0, 1}]))
    # test_eval_cli.cpp fixture: raw 1/2, -1/4, 5/12, 3/8, 1/2; pp 0.6: 3/4, 1/6, 1/8, 1/4
    S = masks(4, [{0}, {0, 1}])
    Y = masks(4, [{0}, {3}])
    report("cli raw", S, Y)
    report("cli pp 0.6", pp(S, 0.6), Y)


if __name__ == "__main__":
    main()
