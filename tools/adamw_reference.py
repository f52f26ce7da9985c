#!/usr/bin/python3
"""Reference numbers for tests/optim/test_adamw.cpp, from torch.optim.AdamW.

The problem: two parameters w0 [5] and w1 [3, 2] (flattened in that order, index i),
gradient g_i = a_i * p_i + b_i with a_i = 0.5 + 0.3 i, b_i = 0.1 (i + 1) (-1)^i except
b_3 = 0 (so p_3 = 0 has a zero gradient throughout), six steps with the learning rates
LRS (changed between steps, as a schedule does), betas (0.9, 0.999), eps 1e-8,
weight_decay 0.1. Prints the parameters after every step (float64) and after the last
step (float32), and the final moments (float64), as C++ initialisers.

    /usr/bin/python3 tools/adamw_reference.py
"""
import torch

INIT = [0.5, -1.25, 2.0, 0.0, 3e-3, 1.0, -2.0, 0.25, 4.0, -0.5, 1e-4]
LRS = [1e-2, 2e-2, 3e-2, 3e-2, 1.5e-2, 5e-3]
A = [0.5 + 0.3 * i for i in range(len(INIT))]
B = [0.0 if i == 3 else 0.1 * (i + 1) * (-1) ** i for i in range(len(INIT))]


def run(dtype):
    flat = torch.tensor(INIT, dtype=dtype)
    w0 = torch.nn.Parameter(flat[:5].clone())
    w1 = torch.nn.Parameter(flat[5:].clone().reshape(3, 2))
    opt = torch.optim.AdamW([w0, w1], lr=LRS[0], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    a = torch.tensor(A, dtype=dtype)
    b = torch.tensor(B, dtype=dtype)
    history = []
    for lr in LRS:
        for group in opt.param_groups:
            group["lr"] = lr
        p = torch.cat([w0.detach().reshape(-1), w1.detach().reshape(-1)])
        g = a * p + b
        w0.grad = g[:5].clone()
        w1.grad = g[5:].clone().reshape(3, 2)
        opt.step()
        history.append(torch.cat([w0.detach().reshape(-1), w1.detach().reshape(-1)]).tolist())
    m = torch.cat([opt.state[w]["exp_avg"].reshape(-1) for w in (w0, w1)]).tolist()
    v = torch.cat([opt.state[w]["exp_avg_sq"].reshape(-1) for w in (w0, w1)]).tolist()
    return history, m, v


def fmt(values, digits):
    return "{" + ", ".join(f"{x:.{digits}g}" for x in values) + "}"


def main():
    defaults = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))]).defaults
    print(f"// torch {torch.__version__} AdamW defaults: lr={defaults['lr']} betas={defaults['betas']} "
          f"eps={defaults['eps']} weight_decay={defaults['weight_decay']}")
    history, m, v = run(torch.float64)
    print("// float64: parameters after steps 1..6")
    print("const double expected_f64[6][11] = {")
    for h in history:
        print("    " + fmt(h, 17) + ",")
    print("};")
    print("const double expected_m_f64[11] = " + fmt(m, 17) + ";")
    print("const double expected_v_f64[11] = " + fmt(v, 17) + ";")
    history32, _, _ = run(torch.float32)
    print("// float32: parameters after step 6")
    print("const float expected_f32[11] = " + fmt(history32[-1], 9) + ";")


if __name__ == "__main__":
    main()
