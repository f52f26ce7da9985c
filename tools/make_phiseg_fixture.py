#!/usr/bin/python3
"""Writes the PHiSeg fixtures under tests/fixtures/phiseg/:

    /usr/bin/python3 tools/make_phiseg_fixture.py          (Debian's torch 1.13; about 2.5 minutes)
    (one CPU thread; nearly all of it is the gradcheck)

The model is tools/phiseg_reference.py (a port of the semantics of the authors' TensorFlow code;
its docstring gives the architecture, the formulas and the TF variable of every parameter name).

1. phiseg_paper_keys.txt: the state_dict of the paper configuration (phiseg_7_5 with n0 = 20:
   zdim0 2, L = 5 latent levels, R = 7 resolution levels, 1 image channel, 2 classes, the dead
   z-upsampling pairs allocated), one "name<TAB>shape<TAB>param|buffer" line each (shape
   "AxBx.."). The script asserts 7,322,210 trainable parameters (6,974,690 without the dead
   pairs, i.e. the names <net>.z_ups.<a>.<b>.* with b < a).

2. phiseg_small.safetensors: one training step and one generation (eval) pass of a small
   configuration, CONFIG below (also in the metadata key "config" as JSON): n0 4 (c = 4, 8, 16,
   24), zdim0 2, L = 3, R = 4 (dl = R - L = 1), B = 3 cases of H x W = 16 x 24 (not square, so
   that a swap of the two axes shows; latent levels at 8x12, 4x6, 2x3, the top level's 3x3 mu
   conv sees its zero padding, one dead pair per net: z_ups.2.1).
   The weights are RANDOM ON PURPOSE, not TF's initialisation: every conv weight N(0, 2/fan_in),
   every bias N(0, 0.1^2), BN gamma 1 + N(0, 0.2^2), beta N(0, 0.2^2), so that every path and
   every gradient is informative. They are rounded to float16 and stored as F16, so the C++ side
   reads exactly the weights the model ran with; the model runs in float64. BN running statistics
   start at running_mean 0, running_var 1 (not stored). The training step runs BN in training
   mode, with the dead branches and the generation pass updating running statistics as TF does
   (config bn_update_dead_branches, bn_update_generation_pass).

   Shapes: B 3, K 2 classes, D 2, H 16, W 24, h_l x w_l = (H, W) / 2^(l+1) for l = 0, 1, 2;
   <l> is the level 0..2; scalars have shape [1].
   param/<name>              F16  every trainable parameter (named_parameters order)
   image                     F32  [B,1,H,W]   N(0, 1)
   mask                      F32  [B,1,H,W]   the annotation, class indices {0, 1}
   eps/<l>                   F32  [B,D,h_l,w_l]  the posterior's N(0, 1) noise
   gen_eps/<l>               F32  [B,D,h_l,w_l]  the generation pass's N(0, 1) noise (its only
                                               effect: the prior's and likelihood's BN running
                                               statistics)
   posterior_mu/<l>, posterior_sigma/<l>   F64 [B,D,h_l,w_l]  q(z_l | x, y, z_{l+1})
   z/<l>                     F64  [B,D,h_l,w_l]  posterior_mu + posterior_sigma * eps
   prior_mu/<l>, prior_sigma/<l>   F64 [B,D,h_l,w_l]  p(z_l | x, z/<l+1>) (conditioned on the
                                               POSTERIOR's sample; training-mode BN)
   level_logits/<l>          F64  [B,K,H,W]   s_l (nearest-upsampled to H x W)
   ce/<l>                    F64  [1]         CE of S_l = sum_{k >= l} s_k (sum over pixels,
                                               mean over the batch)
   kl/<l>                    F64  [1]         KL_l, UNWEIGHTED (TF's KL_two_gauss_with_diag_cov)
   logits                    F64  [B,K,H,W]   S_0 = sum_l s_l
   total                     F64  [1]         sum_l ce/<l> + sum_l 4^l kl/<l>
   grad/<name>               F64  d total / d parameter, every param/<name> (dead pairs: 0)
   running_after/<name>      F64  every BN running_mean / running_var after the step (dead
                                  pairs included: they were executed for their statistics)
   gen/z/<l>                 F64  [B,D,h_l,w_l]  the generation pass's prior samples (prior
                                               conditioned on itself, training-mode BN)
   eval/eps/<l>              F32  [B,D,h_l,w_l]  the prior's noise for the eval pass
   eval/prior_mu/<l>, eval/prior_sigma/<l>, eval/z/<l>   F64   generation mode, BN on the running
                                               statistics running_after/*
   eval/level_logits/<l>     F64  [B,K,H,W]
   eval/logits               F64  [B,K,H,W]   sum_l eval/level_logits/<l>
   Metadata: "config" (JSON), "noise_order", "generator", "torch", "batch", "height", "width".

   Noise order (for a C++ side that draws from one stream): the training step consumes
   eps/2, eps/1, eps/0 (the posterior, top level first, as it samples), then gen_eps/2,
   gen_eps/1, gen_eps/0 (the generation pass); the eval pass consumes eval/eps/2, eval/eps/1,
   eval/eps/0. Each tensor in row-major order of its [B,D,h,w] shape. (TF also draws noise for
   the training-mode prior's own samples, which nothing uses; none is drawn here.)

Sanity checks before writing: the paper counts; the TF1 legacy bilinear x2 against a hand
computed example and a direct transcription of TF's resize_bilinear coordinate mapping; the
nearest resize; torch.autograd.gradcheck (float64) of total of a tiny configuration w.r.t. every
parameter (dead ones included), the image and the posterior noise; the BN running statistics
after the step against the update rule applied by hand to the recorded batch statistics of every
BN call (training pass, then generation pass); every non-dead conv output channel and BN channel
of the small model gets a non-zero gradient, every dead one exactly 0; the F16 weights and F32
inputs round-trip.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_prob_unet_fixture import write_safetensors  # noqa: E402
from phiseg_reference import (PAPER_CONFIG, PAPER_PARAMETER_COUNT,  # noqa: E402
                              PAPER_PARAMETER_COUNT_WITHOUT_DEAD, BatchNorm, PHiSeg, is_dead,
                              nn_up, parameter_count, state_dict_listing, up2)

CONFIG = dict(PAPER_CONFIG, n0=4, latent_levels=3, resolution_levels=4)
BATCH, HEIGHT, WIDTH = 3, 16, 24
SEED = 20190613
# n0 = 1 keeps gradcheck's one-by-one perturbation of every parameter to about two minutes. The
# generation pass runs under no_grad and only moves running statistics, so it is off here (the
# fixture exercises it).
TINY_CONFIG = dict(PAPER_CONFIG, n0=1, latent_levels=3, resolution_levels=4,
                   bn_update_generation_pass=False)

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                           "phiseg")


def randomize(model, half=True):
    """Random weights (see the docstring), rounded to float16 when half."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1)
            elif isinstance(module, BatchNorm):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
        if half:
            for p in model.parameters():
                p.copy_(p.half().float())


def check_resize():
    """up2 = TF1 resize_bilinear (align_corners=False, legacy coordinates); nn_up = TF1 nearest."""
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0]]).double()[None, None]
    want = torch.tensor([[1.0, 1.5, 2.0, 2.0],
                         [2.0, 2.75, 3.5, 3.5],
                         [3.0, 4.0, 5.0, 5.0],
                         [3.0, 4.0, 5.0, 5.0]]).double()
    assert torch.equal(up2(x)[0, 0], want), up2(x)
    assert torch.equal(up2(torch.tensor([[[[0.0, 4.0, 10.0]]]]).double())[0, 0],
                       torch.tensor([[0.0, 2.0, 4.0, 7.0, 10.0, 10.0]] * 2).double())

    def tf_resize_bilinear(a, out_h, out_w):
        # tensorflow/core/kernels/resize_bilinear_op.cc, align_corners=False,
        # half_pixel_centers=False: in = out * (in_size / out_size); lower = floor(in),
        # upper = min(lower + 1, in_size - 1); top = tl + (tr - tl) * xl, bottom likewise,
        # out = top + (bottom - top) * yl.
        in_h, in_w = a.shape
        out = np.zeros((out_h, out_w))
        for y in range(out_h):
            fy = y * (in_h / out_h)
            y0 = int(np.floor(fy))
            y1, yl = min(y0 + 1, in_h - 1), fy - y0
            for xx in range(out_w):
                fx = xx * (in_w / out_w)
                x0 = int(np.floor(fx))
                x1, xl = min(x0 + 1, in_w - 1), fx - x0
                top = a[y0, x0] + (a[y0, x1] - a[y0, x0]) * xl
                bottom = a[y1, x0] + (a[y1, x1] - a[y1, x0]) * xl
                out[y, xx] = top + (bottom - top) * yl
        return out

    g = torch.Generator().manual_seed(1)
    a = torch.randn(2, 3, 5, 3, generator=g).double()
    ours = up2(a)
    for b in range(2):
        for ch in range(3):
            ref = tf_resize_bilinear(a[b, ch].numpy(), 10, 6)
            assert np.allclose(ours[b, ch].numpy(), ref, rtol=0, atol=1e-14)
    differs = torch.nn.functional.interpolate(a, scale_factor=2, mode="bilinear",
                                              align_corners=False)
    assert not torch.allclose(ours, differs)  # PyTorch's half-pixel bilinear is another filter
    r = nn_up(a, 4)
    assert r.shape == (2, 3, 20, 12)
    assert torch.equal(r[:, :, 7, 9], a[:, :, 1, 2])
    assert torch.equal(r, torch.nn.functional.interpolate(a, scale_factor=4, mode="nearest"))
    print("up2 = TF1 legacy bilinear x2 (hand example, TF's coordinate mapping on 5x3 -> 10x6; "
          "differs from PyTorch's bilinear); nn_up = nearest: ok")


def write_paper_keys():
    model = PHiSeg(PAPER_CONFIG)
    n, n_live = parameter_count(model), parameter_count(model, dead=False)
    print("paper configuration: trainable parameters", n, "; without the dead pairs", n_live)
    assert n == PAPER_PARAMETER_COUNT, n
    assert n_live == PAPER_PARAMETER_COUNT_WITHOUT_DEAD, n_live
    path = os.path.join(FIXTURE_DIR, "phiseg_paper_keys.txt")
    with open(path, "w") as f:
        f.write(f"# state_dict of PHiSeg, paper configuration (TF phiseg_7_5 with n0=20): {n} "
                f"trainable parameters ({n_live} without the dead pairs <net>.z_ups.<a>.<b>, "
                f"b < a)\n")
        f.write(f"# config {json.dumps(PAPER_CONFIG)}\n")
        f.write("# written by tools/make_phiseg_fixture.py; name<TAB>shape<TAB>param|buffer\n")
        for name, shape, kind in state_dict_listing(model):
            f.write(f"{name}\t{'x'.join(map(str, shape))}\t{kind}\n")
    print("wrote", path)


def draw(shapes):
    """N(0, 1) float32 draws (exact in F32), as float64."""
    return [torch.randn(*s).double() for s in shapes]


def disc_masks(b, h, w):
    """A disc per case with random centre and radius, plus some flipped pixels."""
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = torch.zeros(b, 1, h, w, dtype=torch.float64)
    for i in range(b):
        cy = torch.randint(4, h - 4, (1,)).item()
        cx = torch.randint(4, w - 4, (1,)).item()
        r = 2.5 + 3.0 * torch.rand(1).item()
        mask[i, 0] = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).double()
    flip = torch.rand(b, 1, h, w) < 0.05
    mask[flip] = 1 - mask[flip]
    return mask


def gradcheck_tiny():
    """float64 gradcheck of total of a tiny model (BN in training mode)."""
    torch.manual_seed(7)
    model = PHiSeg(TINY_CONFIG)
    randomize(model, half=False)
    model = model.double().train()
    b, h, w = 2, 8, 16
    image = torch.randn(b, 1, h, w, dtype=torch.float64)
    mask = (torch.rand(b, 1, h, w) < 0.5).double()
    shapes = model.latent_shapes(b, h, w)
    eps = draw(shapes)
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone() for p in model.parameters()]
    L = TINY_CONFIG["latent_levels"]

    def total_fn(image, *rest):
        e, ps = list(rest[:L]), rest[L:]
        out = torch.nn.utils.stateless.functional_call(model, dict(zip(names, ps)),
                                                       (image, mask, e))
        return out["total"]

    inputs = tuple(t.clone().requires_grad_(True) for t in (image, *eps, *params))
    grads = torch.autograd.grad(total_fn(*inputs), inputs, allow_unused=True)
    for name, g in zip(names, grads[1 + L:]):
        assert (g is None) == is_dead(name), name
    ok = torch.autograd.gradcheck(total_fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
    print(f"gradcheck (tiny config n0=1, L=3, R=4, {b}x{h}x{w}, float64, training mode: total "
          f"w.r.t. the image, the posterior noise and {len(params)} parameter tensors, "
          f"{sum(p.numel() for p in params)} numbers; dead pairs: zero):", ok)
    assert ok


def record_bn_calls(model):
    """Hooks recording (module name, batch mean, unbiased batch variance) of every BN call."""
    calls, hooks = [], []
    for name, m in model.named_modules():
        if isinstance(m, BatchNorm):
            def hook(mod, inp, _out, name=name):
                if mod.training:
                    x = inp[0].detach()
                    calls.append((name, x.mean(dim=(0, 2, 3)),
                                  x.var(dim=(0, 2, 3), unbiased=True)))
            hooks.append(m.register_forward_hook(hook))
    return calls, hooks


def check_running_stats(model, calls, cfg):
    """running_after = the TF update applied, call by call, to running_mean 0 / running_var 1."""
    mom = cfg["bn_momentum"]
    expect = {}
    for name, mean, var in calls:
        m0, v0 = expect.get(name, (torch.zeros_like(mean), torch.ones_like(var)))
        expect[name] = ((1 - mom) * m0 + mom * mean, (1 - mom) * v0 + mom * var)
    count = {}
    for name, _, _ in calls:
        count[name] = count.get(name, 0) + 1
    for name, m in model.named_modules():
        if isinstance(m, BatchNorm):
            em, ev = expect[name]
            assert torch.allclose(m.running_mean, em, rtol=1e-13, atol=1e-15), name
            assert torch.allclose(m.running_var, ev, rtol=1e-13, atol=1e-15), name
            want = 1 if name.startswith("posterior.") else 2
            assert count[name] == want, (name, count[name])
    print(f"BN running statistics = the TF update (unbiased variance, momentum {mom}) applied to "
          f"the recorded batch statistics: posterior BNs updated once, prior and likelihood BNs "
          f"twice (training pass, then generation pass), dead pairs included: ok")


def check_informative(model):
    """Every non-dead conv output channel and BN channel has a non-zero gradient; dead: all 0."""
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        live = g.reshape(p.shape[0], -1).abs().amax(dim=1) != 0
        if is_dead(name):
            assert not live.any(), f"{name}: a dead pair has a non-zero gradient"
        else:
            wrong = (~live).nonzero().flatten().tolist()
            assert not wrong, f"{name}: channels {wrong} have a zero gradient"


def make_fixture():
    cfg = CONFIG
    L = cfg["latent_levels"]
    torch.manual_seed(SEED)
    model = PHiSeg(cfg)
    randomize(model, half=True)
    model = model.double().train()
    image = torch.randn(BATCH, 1, HEIGHT, WIDTH).double()
    mask = disc_masks(BATCH, HEIGHT, WIDTH)
    shapes = model.latent_shapes(BATCH, HEIGHT, WIDTH)
    # Consumption order: top level first (see the docstring).
    eps = list(reversed(draw(list(reversed(shapes)))))
    gen_eps = list(reversed(draw(list(reversed(shapes)))))
    eval_eps = list(reversed(draw(list(reversed(shapes)))))

    margins = []  # smallest |BN output| = |ReLU input|: no kink within rounding distance
    hooks = [m.register_forward_hook(lambda _m, _i, o: margins.append(o.abs().min().item()))
             for m in model.modules() if isinstance(m, BatchNorm)]
    calls, bn_hooks = record_bn_calls(model)
    out = model.training_step(image, mask, eps, gen_eps)
    for hk in hooks + bn_hooks:
        hk.remove()
    print(f"smallest |ReLU input| in the training step: {min(margins):.3e}")
    assert min(margins) > 1e-9
    out["total"].backward()
    check_informative(model)
    check_running_stats(model, calls, cfg)
    grads = [(n, p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in model.named_parameters()]
    running_after = {n: t.detach().clone() for n, t in model.state_dict().items()
                     if n.endswith("running_mean") or n.endswith("running_var")}
    s_sum = sum(out["level_logits"])
    assert torch.allclose(s_sum, out["logits"], rtol=1e-14, atol=1e-12)

    model.eval()
    with torch.no_grad():
        ev = model.sample(image, eval_eps)

    for key in ("posterior_mu", "posterior_sigma", "prior_mu", "prior_sigma", "z",
                "level_logits"):
        for l in range(L):
            v = out[key][l].detach()
            print(f"{key}/{l:<3d} min {v.min().item():+.4f} max {v.max().item():+.4f}")
    print("ce", [round(c.item(), 6) for c in out["ce"]], "kl",
          [round(k.item(), 6) for k in out["kl"]], "total", round(out["total"].item(), 6))
    print(f"eval logits min {ev['logits'].min().item():+.4f} "
          f"max {ev['logits'].max().item():+.4f}")

    def f64(t):
        return (t.detach().numpy(), "F64")

    def scalar(t):
        return (t.detach().reshape(1).numpy(), "F64")

    tensors = {}
    for name, p in model.named_parameters():
        half = p.detach().numpy().astype(np.float16)
        assert np.array_equal(half.astype(np.float64), p.detach().numpy()), name
        tensors["param/" + name] = (half, "F16")
    tensors["image"] = (image.numpy(), "F32")
    tensors["mask"] = (mask.numpy(), "F32")
    for l in range(L):
        tensors[f"eps/{l}"] = (eps[l].numpy(), "F32")
    for l in range(L):
        tensors[f"gen_eps/{l}"] = (gen_eps[l].numpy(), "F32")
    for key in ("posterior_mu", "posterior_sigma", "z", "prior_mu", "prior_sigma",
                "level_logits"):
        for l in range(L):
            tensors[f"{key}/{l}"] = f64(out[key][l])
    for key in ("ce", "kl"):
        for l in range(L):
            tensors[f"{key}/{l}"] = scalar(out[key][l])
    tensors["logits"] = f64(out["logits"])
    tensors["total"] = scalar(out["total"])
    for name, g in grads:
        tensors["grad/" + name] = (g.numpy(), "F64")
    for name, t in running_after.items():
        tensors["running_after/" + name] = (t.numpy(), "F64")
    for l in range(L):
        tensors[f"gen/z/{l}"] = f64(out["gen_z"][l])
    for l in range(L):
        tensors[f"eval/eps/{l}"] = (eval_eps[l].numpy(), "F32")
    for key in ("prior_mu", "prior_sigma", "z", "level_logits"):
        for l in range(L):
            tensors[f"eval/{key}/{l}"] = f64(ev[key][l])
    tensors["eval/logits"] = f64(ev["logits"])
    for name, (array, dtype) in tensors.items():  # F32 inputs are exact
        if dtype == "F32":
            assert np.array_equal(array.astype(np.float32).astype(np.float64), array), name

    top = ", ".join(f"{{0}}/{l}" for l in reversed(range(L)))
    metadata = {
        "config": json.dumps(cfg),
        "noise_order": (f"training step: {top.format('eps')}, then {top.format('gen_eps')}; "
                        f"eval pass: {top.format('eval/eps')}; each [B,D,h,w] row-major"),
        "generator": "tools/make_phiseg_fixture.py", "torch": torch.__version__,
        "batch": str(BATCH), "height": str(HEIGHT), "width": str(WIDTH)}
    path = os.path.join(FIXTURE_DIR, "phiseg_small.safetensors")
    write_safetensors(path, tensors, metadata)
    size = os.path.getsize(path)
    print(f"wrote {path}: {parameter_count(model)} parameters "
          f"({parameter_count(model, dead=False)} without the dead pairs), {len(tensors)} tensors, "
          f"{size} bytes")
    assert size < 1 << 20
    for name, (array, dtype) in tensors.items():
        if not name.startswith(("param/", "grad/", "running_after/")):
            print(f"  {name}\t{dtype}\t{list(array.shape)}")


def main():
    torch.set_num_threads(1)
    os.makedirs(FIXTURE_DIR, exist_ok=True)
    check_resize()
    write_paper_keys()
    gradcheck_tiny()
    make_fixture()


if __name__ == "__main__":
    main()
