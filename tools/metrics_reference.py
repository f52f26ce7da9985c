#!/usr/bin/python3
"""Independent re-computation of the hand-worked cases in tests/metrics/ with numpy.

Run: /usr/bin/python3 tools/metrics_reference.py
HM-IoU is computed by brute force over all permutations of the lcm(n, m) repeats (no
scipy needed), GED² with both estimators straight from the definition in SPEC §8.
S_NCC, the CI score and the QUBIQ score are computed pixel by pixel from their definitions
(docs/metrics.md): one-hot cross-entropies with log(x + 1e-8) for S_NCC, np.var of the
difference masks for the CI's diversity agreement, float thresholds for QUBIQ.
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


EPS = 1e-8


def one_hot(m):
    m = m.astype(float)
    return np.stack([1 - m, m], axis=-1)


def s_ncc(S, Y):
    samples = [one_hot(s) for s in S]
    mean = np.mean(samples, axis=0)
    xent = lambda q, s: -np.sum(q * np.log(s + EPS), axis=-1)  # CE(q, s)
    gamma = np.mean([xent(mean, s) for s in samples], axis=0)

    def ncc(a, v):
        a = (a - a.mean()) / (a.std() * a.size + EPS)
        v = (v - v.mean()) / (v.std() + EPS)
        return float(np.sum(a * v))
    return float(np.mean([ncc(gamma, np.mean([xent(one_hot(y), s) for s in samples], axis=0)) for y in Y]))


def collective_insight(S, Y, authors=False):
    us, uy = np.logical_or.reduce(S), np.logical_or.reduce(Y)
    tp = np.logical_and(us, uy).sum()
    ref = us.sum() if authors else uy.sum()  # the authors' code: precision of the samples' union
    sc = 1.0 if ref == 0 else tp / ref
    dmax = np.mean([max(dice(s, y) for s in S) for y in Y])

    def variances(A):
        pairs = [(i, j) for i in range(len(A)) for j in range(len(A)) if authors or i < j]
        return [np.var(A[i].astype(int) - A[j].astype(int)) for i, j in pairs]
    if not authors and (len(S) < 2 or len(Y) < 2):
        return sc, dmax, float("nan"), float("nan")
    vs, vy = variances(S), variances(Y)
    da = 1 - (abs(max(vy) - max(vs)) + abs(min(vy) - min(vs))) / 2
    return sc, dmax, da, 3 * sc * dmax * da / (sc + dmax + da)


def qubiq(S, Y):
    ps, py = np.mean(S, axis=0), np.mean(Y, axis=0)
    return float(np.mean([dice(ps > t, py > t) for t in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]]))


def report_pixel_metrics(name, S, Y):
    print(f"{name}: ncc {s_ncc(S, Y):.12f} qubiq {qubiq(S, Y):.12f}")
    print("  ci published", ", ".join(f"{v:.12f}" for v in collective_insight(S, Y)))
    print("  ci authors  ", ", ".join(f"{v:.12f}" for v in collective_insight(S, Y, authors=True)))


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
    # test_ambiguity_metrics.cpp: S_c 5/6, D_max 6/7, D_a 3/4, CI 27/41; authors 1, 6/7, 7/8,
    # 14/17; QUBIQ 230/297; S_NCC close to the Pearson correlation 0.417365
    report_pixel_metrics("ambiguity case", masks(8, [{0, 1, 2, 3}, {2, 3, 4}]),
                         masks(8, [{0, 1, 2}, {2, 3, 4, 5}]))
    # a 3x5 case with n = 3, m = 4 (the values the test holds)
    rng = np.random.default_rng(7)
    S3 = [m for m in (rng.random((3, 15)) < 0.4)]
    Y4 = [m for m in (rng.random((4, 15)) < 0.5)]
    print("  samples", [sorted(np.flatnonzero(m).tolist()) for m in S3])
    print("  annotations", [sorted(np.flatnonzero(m).tolist()) for m in Y4])
    report_pixel_metrics("random case", S3, Y4)


if __name__ == "__main__":
    main()
