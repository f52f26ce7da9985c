#!/usr/bin/env python3
"""PyTorch timing of the reference UNet (tools/reference_unet.py) at the shapes of
benchmarks/bm_unet.cpp: forward at batch 8 and 16 on 128x128, a training step (forward,
x-space MSE, backward, clip_grad_norm 1.0, AdamW) at batch 8 on 128x128 and 64x64, and a
sampling run (sample_16_128: 16 chains of one 128x128 image, 10 network evaluations).

    $(benchmarks/peer/setup_venv.sh) benchmarks/peer/torch_unet_bench.py [--threads 2]

Tuning: every case runs with the knobs that matter on a CPU and the best is reported:
  layout   contiguous (NCHW) or channels_last (NHWC)
  mkldnn   torch.backends.mkldnn enabled or disabled (oneDNN convolutions vs. THNN/im2col)
  compile  eager, or torch.compile (default inductor; torch 2.x; compiled before timing)
  forward  under torch.inference_mode(); training in train mode with set_to_none grads.
--precision bf16 runs every variant under torch.autocast("cpu", dtype=torch.bfloat16).
Prints one line per case: name, seconds per iteration (best of the repeats), GFLOP/s.
"""
import contextlib
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from reference_unet import DEFAULT_CONFIG, ReferenceUNet  # noqa: E402

FORWARD_GFLOP_128 = 9.30


def flop(batch, size):
    return FORWARD_GFLOP_128 * 1e9 * batch * (size / 128) ** 2


def make_inputs(batch, size, layout):
    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(batch, 1, size, size, generator=g)
    image = torch.randn(batch, 3, size, size, generator=g)
    t = torch.rand(batch, generator=g)
    x0 = torch.where(torch.rand(batch, 1, size, size, generator=g) < 0.5, -1.0, 1.0)
    if layout == "channels_last":
        x_t, image, x0 = (v.contiguous(memory_format=torch.channels_last) for v in (x_t, image, x0))
    return x_t, image, t, x0


def make_model(layout):
    torch.manual_seed(0)
    model = ReferenceUNet(**DEFAULT_CONFIG)
    if layout == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    return model


CLOCK = time.perf_counter


def time_it(fn, repeats, min_seconds=1.0):
    fn()  # warm-up (allocator, oneDNN primitive cache)
    best = float("inf")
    for _ in range(repeats):
        n, start = 0, CLOCK()
        while True:
            fn()
            n += 1
            elapsed = CLOCK() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / n)
    return best


PRECISION = "fp32"


def autocast():
    if PRECISION == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def maybe_compile(model, compiled):
    return torch.compile(model) if compiled else model


def bench_forward(batch, size, layout, repeats, compiled):
    model = maybe_compile(make_model(layout).eval(), compiled)
    x_t, image, t, _ = make_inputs(batch, size, layout)

    def run():
        with torch.inference_mode(), autocast():
            model(x_t, image, t)
    return time_it(run, repeats)


def bench_sample(chains, size, layout, repeats, compiled, steps=10):
    """One image's chains through `steps` network evaluations (the sampler's own arithmetic is
    a few elementwise operations per step, included)."""
    model = maybe_compile(make_model(layout).eval(), compiled)
    x_t, image, _, _ = make_inputs(chains, size, layout)

    def run():
        x = x_t.clone()
        with torch.inference_mode(), autocast():
            for k in range(steps, 0, -1):
                t = torch.full((chains,), k / steps)
                x0 = model(x, image, t).float()
                x = 0.9 * x0 + 0.1 * x
    return time_it(run, repeats)


def bench_train(batch, size, layout, repeats, compiled):
    model = make_model(layout).train()
    step_model = maybe_compile(model, compiled)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)
    x_t, image, t, x0 = make_inputs(batch, size, layout)

    def run():
        opt.zero_grad(set_to_none=True)
        with autocast():
            f = step_model(x_t, image, t)
        loss = torch.mean((f.float() - x0) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return time_it(run, repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="forward_8_128,forward_16_128,train_8_128,train_8_64,sample_16_128")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                    help="bf16: torch.autocast on the CPU (fp32 weights, bf16 compute)")
    ap.add_argument("--compile", default="auto", choices=["auto", "no", "only"],
                    help="torch.compile variants: auto (with torch 2.x), no, only")
    ap.add_argument("--all-variants", action="store_true", help="print every tuning variant")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process CPU clock (on a loaded machine, at 1 thread)")
    ap.add_argument("--variants", default="all", choices=["all", "best-known"],
                    help="best-known: only channels_last+mkldnn for forward, "
                         "contiguous+mkldnn for training")
    args = ap.parse_args()
    global CLOCK, PRECISION
    PRECISION = args.precision
    if args.cpu_time:
        CLOCK = time.process_time
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"mkldnn available {torch.backends.mkldnn.is_available()}, precision {PRECISION}")
    has_compile = hasattr(torch, "compile")
    compiles = {"auto": [False, True] if has_compile else [False], "no": [False], "only": [True]}[args.compile]
    if True in compiles and not has_compile:
        raise SystemExit(f"torch {torch.__version__} has no torch.compile (use the venv of setup_venv.sh)")
    for case in args.cases.split(","):
        kind, batch, size = case.split("_")
        batch, size = int(batch), int(size)
        fn = {"forward": bench_forward, "train": bench_train, "sample": bench_sample}[kind]
        results = []
        variants = [(m, l, c) for c in compiles for m in (True, False) for l in ("contiguous", "channels_last")]
        if args.variants == "best-known":
            variants = [(True, "channels_last" if kind != "train" else "contiguous", c) for c in compiles]
        for mkldnn, layout, compiled in variants:
            torch.backends.mkldnn.enabled = mkldnn
            if compiled:
                torch._dynamo.reset()
            seconds = fn(batch, size, layout, args.repeats, compiled)
            mode = "compile" if compiled else "eager"
            results.append((seconds, layout, mkldnn, mode))
            if args.all_variants:
                print(f"#   {case} {mode} {layout} mkldnn={mkldnn}: {seconds:.4f} s", flush=True)
        torch.backends.mkldnn.enabled = True
        seconds, layout, mkldnn, mode = min(results)
        work = flop(batch, size) * {"forward": 1, "train": 3, "sample": 10}[kind]
        print(f"{case} {seconds:.4f} s {work / seconds / 1e9:.2f} GFLOP/s "
              f"(best: {mode} {layout}, mkldnn={mkldnn})", flush=True)


if __name__ == "__main__":
    main()
