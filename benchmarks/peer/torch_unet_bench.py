#!/usr/bin/python3
"""PyTorch timing of the reference UNet (tools/reference_unet.py) at the shapes of
benchmarks/bm_unet.cpp: forward at batch 8 and 16 on 128x128, and a training step
(forward, x-space MSE, backward, clip_grad_norm 1.0, AdamW) at batch 8 on 128x128 and 64x64.

    /usr/bin/python3 benchmarks/peer/torch_unet_bench.py [--threads 2] [--repeats 3]

Tuning: every case runs with the knobs that matter on a CPU and the best is reported:
  layout   contiguous (NCHW) or channels_last (NHWC)
  mkldnn   torch.backends.mkldnn enabled or disabled (oneDNN convolutions vs. THNN/im2col)
  forward  under torch.inference_mode(); training in train mode with set_to_none grads.
Prints one line per case: name, seconds per iteration (best of the repeats), GFLOP/s.
"""
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


def bench_forward(batch, size, layout, repeats):
    model = make_model(layout).eval()
    x_t, image, t, _ = make_inputs(batch, size, layout)

    def run():
        with torch.inference_mode():
            model(x_t, image, t)
    return time_it(run, repeats)


def bench_train(batch, size, layout, repeats):
    model = make_model(layout).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)
    x_t, image, t, x0 = make_inputs(batch, size, layout)

    def run():
        opt.zero_grad(set_to_none=True)
        f = model(x_t, image, t)
        loss = torch.mean((f - x0) ** 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return time_it(run, repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cases", default="forward_8_128,forward_16_128,train_8_128,train_8_64")
    ap.add_argument("--all-variants", action="store_true", help="print every tuning variant")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with the process CPU clock (on a loaded machine, at 1 thread)")
    ap.add_argument("--variants", default="all", choices=["all", "best-known"],
                    help="best-known: only channels_last+mkldnn for forward, "
                         "contiguous+mkldnn for training")
    args = ap.parse_args()
    global CLOCK
    if args.cpu_time:
        CLOCK = time.process_time
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"mkldnn available {torch.backends.mkldnn.is_available()}")
    for case in args.cases.split(","):
        kind, batch, size = case.split("_")
        batch, size = int(batch), int(size)
        fn = bench_forward if kind == "forward" else bench_train
        results = []
        variants = [(m, l) for m in (True, False) for l in ("contiguous", "channels_last")]
        if args.variants == "best-known":
            variants = [(True, "channels_last" if kind == "forward" else "contiguous")]
        for mkldnn, layout in variants:
            torch.backends.mkldnn.enabled = mkldnn
            seconds = fn(batch, size, layout, args.repeats)
            results.append((seconds, layout, mkldnn))
            if args.all_variants:
                print(f"#   {case} {layout} mkldnn={mkldnn}: {seconds:.4f} s", flush=True)
        torch.backends.mkldnn.enabled = True
        seconds, layout, mkldnn = min(results)
        work = flop(batch, size) * (3 if kind == "train" else 1)
        print(f"{case} {seconds:.4f} s {work / seconds / 1e9:.2f} GFLOP/s "
              f"(best: {layout}, mkldnn={mkldnn})", flush=True)


if __name__ == "__main__":
    main()
