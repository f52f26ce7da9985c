#!/usr/bin/python3
"""The PyTorch peer of `ambiseg train`: the same network, recipe and data, for comparing
quality per CPU-minute (docs/results.md, benchmarks/peer/ged_vs_time.sh).

Everything that defines the run is read from an ambiseg run's config.json (the file
`ambiseg train` writes): the UNet (tools/reference_unet.py, the same architecture and
parameter names, tested against the C++ network), the schedule (cosine with input scaling b
and the endpoint clipping of SPEC §2, evaluated in double), the prediction (x, eps, v;
tanh head for x), the weighting, stratified t, AdamW (torch.optim.AdamW: the same
decoupled weight decay), clip_grad_norm_ (the same rule), warm-up + cosine-decay learning
rate (optim/lr_schedule.hpp) and the batch (one annotation per case drawn uniformly,
random or central crops). The data are the arrays of `ambiseg export`.

Snapshots are written as safetensors with ambiseg's parameter names and the same "config"
metadata, so `ambiseg eval --ckpt` scores them with exactly the protocol used for
ambiseg's own snapshots. The log (log.csv) has the columns of ambiseg's:
step,loss,lr,grad_norm,seconds,cpu_seconds (cpu = time.process_time(), all threads).

    /usr/bin/python3 benchmarks/peer/torch_train_peer.py --config run/config.json \
        --data exported/ --out torch_run --snapshots 250,500,1000 [--threads 1]
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from convert_reference_checkpoint import write_safetensors  # noqa: E402
from reference_unet import ReferenceUNet  # noqa: E402


# ---- schedule, prediction, weighting (SPEC §2-4), in double ------------------------------

def log_snr_plain(name, t):
    t = t.double()
    if name == "cosine":
        return -2.0 * torch.log(torch.tan(math.pi * t / 2))
    if name == "linear":
        return -torch.log(torch.expm1(1e-4 + 10.0 * t * t))
    if name == "linear_simple":
        return torch.log((1.0 - t) / t)
    if name == "parabola":
        g = (1.0 - t * t) ** 2
        return torch.log(g / (1.0 - g))
    raise SystemExit(f"torch_train_peer: schedule '{name}' is not implemented here")


def gamma_clipped(policy, t):
    """γ of the scaled (λ + 2 log b) and endpoint-clipped schedule (SPEC §2), double."""
    b = policy["input_scale"]

    def gamma_b(tt):
        return torch.sigmoid(log_snr_plain(policy["schedule"], tt) + 2.0 * math.log(b))

    # γ_b at the ends as the schedule gives them (linear's λ(0) is finite, so γ_b(0) < 1).
    g0, g1 = gamma_b(torch.tensor([0.0, 1.0], dtype=torch.float64)).tolist()
    k = (1.0 / (1.0 + math.exp(-20.0)) - 1.0 / (1.0 + math.exp(20.0))) / (g0 - g1)
    k0 = 1.0 / (1.0 + math.exp(20.0)) - g1 * k
    return gamma_b(t) * k + k0


def weight(policy, gamma):
    snr = gamma / (1.0 - gamma)
    w = policy["weighting"]
    if w == "snr":
        return snr
    if w == "trunc_snr":
        return torch.clamp(snr, min=1.0)
    if w == "snr_plus_one":
        return snr + 1.0
    if w == "uniform":
        return torch.ones_like(snr)
    if w == "sigmoid":
        return torch.sigmoid(torch.log(snr) + policy["sigmoid_bias"])
    raise SystemExit(f"torch_train_peer: weighting '{w}' is not implemented here")


def predicted_x0(prediction, f, x_t, alpha, sigma):
    if prediction == "x":
        return f
    if prediction == "eps":
        return (x_t - sigma * f) / alpha
    return alpha * x_t - sigma * f  # v


def draw_t(batch, stratified, g):
    u = torch.rand(batch, generator=g, dtype=torch.float64)
    if not stratified:
        return u
    return (torch.randperm(batch, generator=g).double() + u) / batch


def learning_rate(lr, step):
    total, warmup, decay = lr["total_steps"], lr["warmup_steps"], lr["decay_steps"]
    if step >= total:
        return 0.0
    factor = 1.0
    if step < warmup:
        factor = (step + 1) / warmup
    start = total - decay
    if step >= start and decay > 0:
        factor *= 0.5 * (1.0 + math.cos(math.pi * (step - start) / decay))
    return lr["base_lr"] * factor


# ---- data: the arrays of `ambiseg export` -------------------------------------------------

class Batches:
    """Cases shuffled per epoch, one annotation per case uniformly, a crop per case."""

    def __init__(self, images, masks, batch, crop, mode, g):
        self.images, self.masks, self.batch, self.crop, self.mode, self.g = images, masks, batch, crop, mode, g
        self.order, self.pos = [], 0

    def next(self):
        n, _, h, w = self.images.shape
        xs, ms = [], []
        for _ in range(self.batch):
            if self.pos == len(self.order):
                self.order, self.pos = torch.randperm(n, generator=self.g).tolist(), 0
            i = self.order[self.pos]
            self.pos += 1
            a = int(torch.randint(self.masks.shape[1], (1,), generator=self.g))
            if self.mode == "random":
                y = int(torch.randint(h - self.crop + 1, (1,), generator=self.g))
                x = int(torch.randint(w - self.crop + 1, (1,), generator=self.g))
            else:
                y, x = (h - self.crop) // 2, (w - self.crop) // 2
            xs.append(self.images[i, :, y:y + self.crop, x:x + self.crop])
            ms.append(self.masks[i, a:a + 1, y:y + self.crop, x:x + self.crop])
        image = torch.from_numpy(np.stack(xs)).float()
        x0 = torch.from_numpy(np.stack(ms)).float() * 2.0 - 1.0
        return image, x0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="config.json of an ambiseg training run")
    ap.add_argument("--data", required=True, help="folder written by `ambiseg export`")
    ap.add_argument("--out", required=True)
    ap.add_argument("--snapshots", default="", help="steps to keep, e.g. 250,500,1000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    config = json.load(open(args.config))
    net, policy = config["net"], config["policy"]
    if config["encoding"] != "grey":
        raise SystemExit("torch_train_peer: only the grey encoding is implemented here")
    if net.get("norm_eps", 1e-5) != 1e-5:
        raise SystemExit("torch_train_peer: the reference UNet has GroupNorm eps 1e-5 only")
    if config.get("ema_decay") is not None:
        raise SystemExit("torch_train_peer: EMA is not implemented here")
    images = np.load(os.path.join(args.data, "train_images.npy"))
    masks = np.load(os.path.join(args.data, "train_masks.npy"))
    snapshots = {int(s) for s in args.snapshots.split(",") if s}
    os.makedirs(os.path.join(args.out, "snapshots"), exist_ok=True)

    torch.manual_seed(args.seed)
    model = ReferenceUNet(model_channels=net["model_channels"], channel_mult=tuple(net["channel_mult"]),
                          num_res_blocks=tuple(net["num_res_blocks"]),
                          num_middle_res_blocks=net["num_middle_res_blocks"],
                          attention_levels=tuple(net["attention_levels"]), num_heads=net["num_heads"],
                          in_channels=net["in_channels"], out_channels=net["out_channels"],
                          final_tanh=net["final_tanh"], max_period=net["max_period"])
    model.train()
    a = config["adamw"]
    opt = torch.optim.AdamW(model.parameters(), lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"],
                            weight_decay=a["weight_decay"])
    g = torch.Generator().manual_seed(args.seed)
    batches = Batches(images, masks, config["batch_size"], config["crop_size"], config["crop"], g)
    total = config["lr"]["total_steps"]
    print(f"torch_train_peer: {sum(p.numel() for p in model.parameters())} parameters, {len(images)} training "
          f"cases, {total} steps, {args.threads} thread(s), torch {torch.__version__}", flush=True)

    log = open(os.path.join(args.out, "log.csv"), "w")
    log.write("step,loss,lr,grad_norm,seconds,cpu_seconds\n")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for step in range(total):
        image, x0 = batches.next()
        b = x0.shape[0]
        t = draw_t(b, policy["stratified_t"], g)
        eps = torch.randn(x0.shape, generator=g)
        gamma = gamma_clipped(policy, t)
        alpha = gamma.sqrt().float().view(b, 1, 1, 1)
        sigma = (1.0 - gamma).sqrt().float().view(b, 1, 1, 1)
        w = weight(policy, gamma).float()
        x_t = alpha * x0 + sigma * eps
        f = model(x_t, image, t.float())
        x0_hat = predicted_x0(policy["prediction"], f, x_t, alpha, sigma)
        loss = (w * ((x0_hat - x0) ** 2).mean(dim=(1, 2, 3))).mean()
        lr = learning_rate(config["lr"], step)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config["clip_norm"])
        opt.step()
        done = step + 1
        log.write(f"{done},{loss.item():.6g},{lr:.6g},{float(norm):.6g},{time.perf_counter() - wall0:.4f},"
                  f"{time.process_time() - cpu0:.4f}\n")
        if done in snapshots or done == total:
            log.flush()
            meta = {"config": json.dumps(config), "step": str(done), "trainer": "torch_train_peer"}
            name = f"step-{done}.safetensors" if done in snapshots else "checkpoint.safetensors"
            write_safetensors(os.path.join(args.out, "snapshots" if done in snapshots else "", name),
                              model.state_dict(), meta, "F32")
        if done % 200 == 0:
            print(f"step {done}/{total} loss {loss.item():.4f} lr {lr:.2e} "
                  f"cpu {time.process_time() - cpu0:.0f} s", flush=True)
    log.close()


if __name__ == "__main__":
    main()
