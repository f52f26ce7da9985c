#!/usr/bin/python3
"""Reference numbers for tests/diffusion (run: /usr/bin/python3 tools/diffusion_reference.py).

1. The reference schedule clipped<input_scaled<cosine>> (b = 0.1, λ clipped to ±20),
   evaluated the way SPEC §2 writes it — in γ-space, γ_b = b²γ/((b²−1)γ+1), then
   γ_c = γ_b·k + k0 — with 50-digit mpmath, so it is independent of the λ-space
   formulation in include/ambiseg/diffusion/schedules.hpp. Also dλ/dt by a high-precision
   central difference.
2. A numpy simulation of the samplers with the exact posterior-mean denoiser of a binary
   pixel (P(x0 = +1) = p): the frequency of x̂0 > 0 minus p, i.e. the discretisation bias,
   for N steps. It shows why the end-to-end test uses N = 200 and allows 0.01 of bias on
   top of the binomial tolerance.
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 50


def gamma_ref(t, b=mp.mpf("0.1"), lmax=20):
    t = mp.mpf(t)
    cos_gamma = lambda u: mp.cos(mp.pi * u / 2) ** 2
    def scaled(u):
        g = cos_gamma(u)
        return b**2 * g / ((b**2 - 1) * g + 1)
    g0, g1 = scaled(mp.mpf(0)), scaled(mp.mpf(1))
    sig = lambda x: 1 / (1 + mp.exp(-x))
    k = (sig(lmax) - sig(-lmax)) / (g0 - g1)
    k0 = sig(-lmax) - g1 * k
    return scaled(t) * k + k0


def lam_ref(t):
    g = gamma_ref(t)
    return mp.log(g / (1 - g))


def schedule_table():
    print("// clipped<input_scaled<cosine>>, b = 0.1: {t, gamma, lambda, dlambda/dt}")
    for t in ["0", "0.05", "0.25", "0.5", "0.75", "0.95", "1"]:
        tt = mp.mpf(t)
        h = mp.mpf("1e-20")
        if tt == 0:
            d = (lam_ref(tt + h) - lam_ref(tt)) / h
        elif tt == 1:
            d = (lam_ref(tt) - lam_ref(tt - h)) / h
        else:
            d = (lam_ref(tt + h) - lam_ref(tt - h)) / (2 * h)
        print("{%s, %s, %s, %s}," % (t, mp.nstr(gamma_ref(tt), 17), mp.nstr(lam_ref(tt), 17),
                                     mp.nstr(d, 17)))


def sampler_bias(n_per_p=50000, seed=0):
    sig = lambda x: 1 / (1 + np.exp(-x))
    def lam(t):
        with np.errstate(divide="ignore"):
            lc = 2 * np.log(np.sin(np.pi * (1 - t) / 2)) - 2 * np.log(np.sin(np.pi * t / 2))
        lb = lc + 2 * np.log(0.1)
        k = (sig(20) - sig(-20)) / 1.0
        g = sig(-20) + k * sig(lb)
        om = sig(-20) + k * sig(-lb)
        return np.log(g) - np.log(om)
    rng = np.random.default_rng(seed)
    ps = np.array([0.1, 0.3, 0.5, 0.8])
    print("// sampled frequency − p for p = %s, %d chains per p" % (ps, n_per_p))
    for N in [10, 50, 100, 200]:
        for kind in ["ddim", "small", "large"]:
            p = np.repeat(ps, n_per_p)
            x = rng.standard_normal(p.size)
            for i in range(N, 0, -1):
                t, s = i / N, (i - 1) / N
                lt, ls = lam(t), lam(s)
                at, st = np.sqrt(sig(lt)), np.sqrt(sig(-lt))
                a_s, s_s = np.sqrt(sig(ls)), np.sqrt(sig(-ls))
                x0 = np.tanh(at * x / st**2 + np.arctanh(2 * p - 1))
                if i == 1:
                    x = x0
                    break
                if kind == "ddim":
                    x = a_s * x0 + s_s * (x - at * x0) / st
                else:
                    c = -np.expm1(lt - ls)
                    mean = at * s_s**2 / (st**2 * a_s) * x + c * a_s * x0
                    var = c * s_s**2 if kind == "small" else c * st**2
                    x = mean + np.sqrt(var) * rng.standard_normal(p.size)
            freq = np.array([(x[j * n_per_p:(j + 1) * n_per_p] > 0).mean() for j in range(len(ps))])
            print("N = %3d %-5s bias %s" % (N, kind, np.round(freq - ps, 4)))


if __name__ == "__main__":
    schedule_table()
    sampler_bias()
