#!/usr/bin/python3
"""PyTorch timing of the reference UNet (tools/reference_unet.py) on a CUDA GPU, for the
cases of benchmarks/bm_cuda_unet.cu (reference config, 128x128, float32):

  forward_<B>       UNet forward under torch.inference_mode(), B = 8, 16
  train_<B>         one training step: t ~ U(0, 1), eps ~ N(0, 1) on the GPU, x_t = a x0 + s eps
                    (reference schedule), f = net(x_t, image, t), the weighted x-space MSE
                    (SNR+1 weighting), backward, clip_grad_norm 1.0, AdamW (lr 1e-4, wd 0.01)
  ddim10_<B>        10-step DDIM sampling (x-prediction, clip off), one chain per image
  ddpm10_<B>        10-step DDPM sampling, "large" variance (the reference's), z on the GPU

    /usr/bin/python3 benchmarks/peer/torch_unet_bench_gpu.py [--repeats 20] [--tf32]
        [--amp bf16|fp16] [--no-cudnn-benchmark] [--cases forward_8,train_8,...]

Numerics: by default TF32 is OFF for both cuBLAS matmuls and cuDNN convolutions
(torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False), which is
what ambiseg's default cuda_context (cuda_precision::fp32) does: true FP32 on both sides.
PyTorch's own default allows TF32 in cuDNN convolutions; --tf32 times that for reference
(compare it with ambiseg's --precision tf32). --amp bf16|fp16 runs the model under
torch.autocast (compare with ambiseg's --precision bf16|fp16); fp16 training uses a
GradScaler, as PyTorch's recipe says (ambiseg refuses fp16 training). cudnn.benchmark is on by
default (PyTorch autotunes each conv shape at the first call, which the warm-up absorbs);
ambiseg takes cuDNN's heuristic order and rejects nondeterministic engines, which PyTorch
does not unless torch.use_deterministic_algorithms is set (--deterministic).

Timing: torch.cuda.Event around each iteration on the current stream, after a warm-up of
3 iterations; the median of --repeats iterations is printed in ms, with images/s.
Randomness in the timed loop is drawn on the GPU (torch's generator), where ambiseg draws
on the host and copies: that difference is part of what is measured.
"""
import argparse
import contextlib
import math
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from reference_unet import DEFAULT_CONFIG, ReferenceUNet  # noqa: E402

SIZE = 128


# The reference schedule in λ-space (include/ambiseg/diffusion/schedules.hpp): cosine γ,
# input scale b = 0.1 (λ shifted by 2 log b), clipped linearly in γ to λ ∈ [−20, 20].
def log_snr(t, b=0.1, lmax=20.0, lmin=-20.0):
    def scaled_gamma(u):
        g = torch.cos(math.pi * u / 2) ** 2
        return b * b * g / ((b * b - 1) * g + 1)
    t = torch.as_tensor(t, dtype=torch.float64)
    g0 = scaled_gamma(torch.tensor(0.0, dtype=torch.float64))
    g1 = scaled_gamma(torch.tensor(1.0, dtype=torch.float64))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    k = (sig(lmax) - sig(lmin)) / (g0 - g1)
    gamma = sig(lmin) + k * (scaled_gamma(t) - g1)
    return torch.log(gamma) - torch.log1p(-gamma)


def alpha_sigma(lam):
    return torch.sqrt(torch.sigmoid(lam)), torch.sqrt(torch.sigmoid(-lam))


def time_it(fn, repeats):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def make_model():
    torch.manual_seed(0)
    return ReferenceUNet(**DEFAULT_CONFIG).cuda()


def make_inputs(batch):
    g = torch.Generator(device="cuda").manual_seed(0)
    image = torch.randn(batch, 3, SIZE, SIZE, generator=g, device="cuda")
    x0 = torch.where(torch.rand(batch, 1, SIZE, SIZE, generator=g, device="cuda") < 0.5, -1.0, 1.0)
    t = torch.rand(batch, generator=g, device="cuda")
    x_t = torch.randn(batch, 1, SIZE, SIZE, generator=g, device="cuda")
    return image, x0, t, x_t


AMP_DTYPE = None  # torch.bfloat16 / torch.float16 under --amp


def autocast():
    if AMP_DTYPE is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=AMP_DTYPE)


def bench_forward(batch, repeats):
    model = make_model().eval()
    image, _, t, x_t = make_inputs(batch)

    def run():
        with torch.inference_mode(), autocast():
            model(x_t, image, t)
    return time_it(run, repeats)


def bench_train(batch, repeats):
    model = make_model().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=0.01)
    image, x0, _, _ = make_inputs(batch)
    scaler = torch.amp.GradScaler("cuda") if AMP_DTYPE == torch.float16 else None

    def run():
        t = torch.rand(batch, device="cuda", dtype=torch.float64)
        lam = log_snr(t)
        a, s = (v.float().view(-1, 1, 1, 1) for v in alpha_sigma(lam))
        w = (torch.exp(lam) + 1).float().view(-1, 1, 1, 1)  # SNR + 1
        eps = torch.randn_like(x0)
        x_t = a * x0 + s * eps
        opt.zero_grad(set_to_none=True)
        with autocast():
            f = model(x_t, image, t.float())
        loss = torch.mean(w * (f.float() - x0) ** 2)
        if scaler is None:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(opt)
            scaler.update()
    return time_it(run, repeats)


def sampler_coefficients(kind, t, s):
    lt, ls = log_snr(t).item(), log_snr(s).item()
    at, st = (math.sqrt(1 / (1 + math.exp(-lt))), math.sqrt(1 / (1 + math.exp(lt))))
    as_, ss = (math.sqrt(1 / (1 + math.exp(-ls))), math.sqrt(1 / (1 + math.exp(ls))))
    if kind == "ddim":
        return ss / st, -as_ * math.expm1(0.5 * (lt - ls)), 0.0
    c = -math.expm1(lt - ls)
    return at * ss * ss / (st * st * as_), c * as_, math.sqrt(c) * st


def bench_sample(kind, batch, repeats, steps=10):
    model = make_model().eval()
    image, _, _, _ = make_inputs(batch)
    coeffs = [sampler_coefficients(kind, i / steps, (i - 1) / steps) for i in range(steps, 1, -1)]

    def run():
        with torch.inference_mode(), autocast():
            x = torch.randn(batch, 1, SIZE, SIZE, device="cuda")
            for i in range(steps, 0, -1):
                t = torch.full((batch,), i / steps, device="cuda")
                x0_hat = model(x, image, t).float()  # x-prediction: x̂0 = f
                if i == 1:
                    x = x0_hat
                    break
                c_xt, c_x0, c_noise = coeffs[steps - i]
                x = c_xt * x + c_x0 * x0_hat
                if c_noise:
                    x = x + c_noise * torch.randn_like(x)
        return x
    return time_it(run, repeats)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--cases", default="forward_8,forward_16,train_8,train_16,"
                                       "ddim10_8,ddim10_16,ddpm10_8,ddpm10_16")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 (PyTorch's conv default)")
    ap.add_argument("--amp", choices=["bf16", "fp16"], help="torch.autocast to this type")
    ap.add_argument("--no-cudnn-benchmark", action="store_true")
    ap.add_argument("--deterministic", action="store_true",
                    help="torch.use_deterministic_algorithms(True) (needs CUBLAS_WORKSPACE_CONFIG)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("# no CUDA device: nothing to time")
        return
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    global AMP_DTYPE
    AMP_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16, None: None}[args.amp]
    if args.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    print(f"# torch {torch.__version__}, {torch.cuda.get_device_name()}, tf32={args.tf32}, amp={args.amp}, "
          f"cudnn.benchmark={torch.backends.cudnn.benchmark}, deterministic={args.deterministic}")
    for case in args.cases.split(","):
        kind, batch = case.split("_")
        batch = int(batch)
        if kind == "forward":
            ms = bench_forward(batch, args.repeats)
        elif kind == "train":
            ms = bench_train(batch, args.repeats)
        elif kind in ("ddim10", "ddpm10"):
            ms = bench_sample(kind[:4], batch, args.repeats)
        else:
            raise SystemExit(f"unknown case {case}")
        print(f"{case} {ms:.3f} ms {batch / ms * 1e3:.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
