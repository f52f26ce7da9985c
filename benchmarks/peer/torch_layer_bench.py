#!/usr/bin/python3
"""PyTorch timing of the layer cases of benchmarks/bm_unet.cpp (BM_layer_*): conv3x3
forward and backward (dx, dw, db) at the UNet's shapes, batch 8, NCHW, oneDNN on.
Process CPU time by default, so that a loaded machine distorts less (use 1 thread).

    OMP_NUM_THREADS=1 /usr/bin/python3 benchmarks/peer/torch_layer_bench.py --threads 1
"""
import argparse
import time

import torch
import torch.nn.functional as F

SHAPES = [(32, 32, 128), (64, 32, 128), (32, 32, 64), (64, 32, 64), (32, 64, 32), (64, 64, 32),
          (128, 64, 32), (64, 128, 16), (128, 128, 16), (256, 128, 16)]


def best(fn, repeats=3, min_seconds=0.3):
    fn()
    out = float("inf")
    for _ in range(repeats):
        n, start = 0, time.process_time()
        while time.process_time() - start < min_seconds:
            fn()
            n += 1
        out = min(out, (time.process_time() - start) / n)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for ci, co, h in SHAPES:
        x = torch.randn(8, ci, h, h, requires_grad=True)
        w = torch.randn(co, ci, 3, 3, requires_grad=True)
        b = torch.randn(co, requires_grad=True)
        dy = torch.randn(8, co, h, h)
        with torch.no_grad():
            fwd = best(lambda: F.conv2d(x, w, b, padding=1))
        y = F.conv2d(x, w, b, padding=1)

        def backward():
            torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)
        bwd = best(backward)
        flop = 2.0 * 8 * ci * co * 9 * h * h
        print(f"conv3x3 {ci}/{co}/{h}: forward {fwd * 1e3:7.2f} ms ({flop / fwd / 1e9:6.1f} GFLOP/s)"
              f"  backward {bwd * 1e3:7.2f} ms ({2 * flop / bwd / 1e9:6.1f} GFLOP/s)", flush=True)


if __name__ == "__main__":
    main()
