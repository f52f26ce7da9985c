#!/usr/bin/python3
"""Writes the Generalized Probabilistic U-Net (AA) fixtures under tests/fixtures/prob_unet/:

    /usr/bin/python3 tools/make_prob_unet_fixture.py                (Debian's torch 1.13)
    /usr/bin/python3 tools/make_prob_unet_fixture.py --reference-src DIR
        also runs the authors' code (DIR = the src/ folder of ishaanb92/GeneralizedProbabilisticUNet,
        e.g. from `git archive HEAD src`) on the same weights and inputs and checks that it gives
        the same numbers; needs no matplotlib (stubbed). Nothing of it is imported otherwise.

The model is tools/gen_prob_unet_reference.py (our re-implementation of the reference's semantics;
module names = the reference's state_dict names). The script writes:

1. gen_prob_unet_aa_paper_keys.txt: the state_dict of the paper configuration (F=[32,64,128,256],
   D=6, 1 image channel), one "name<TAB>shape<TAB>param|buffer" line each (shape "AxBx..", "scalar"
   for 0-d); the script asserts the trainable parameter count 6,847,129 (Table 1).

2. gen_prob_unet_aa_small.safetensors: one training step and one inference pass at a small
   configuration, CONFIG below (also in the metadata key "config" as JSON), B=3 cases of 16x16.
   num_filters is [8, 12, 16]: a plan that does not double catches channel mix-ups (the up
   block's input is deeper + skip), and it keeps the file under 1 MB with F64 gradients.
   The weights are RANDOM ON PURPOSE, not the reference's initialisation: every conv weight is
   N(0, 2/fan_in), every bias N(0, 0.1^2) (the reference draws ~1e-3), BatchNorm gamma 1 + N(0, 0.2^2)
   and beta N(0, 0.2^2) (the reference starts at 1 and 0), so that every path and every gradient is
   informative. They are rounded to float16 and stored as F16, so the C++ side reads exactly the
   weights the model ran with; the model itself runs in float64. BatchNorm running stats start at
   the PyTorch defaults (running_mean 0, running_var 1, not stored) and BN runs in TRAINING mode
   (batch statistics, biased variance; the running update uses the unbiased variance:
   r <- (1 - momentum) r + momentum * stat).

   Tensors (B = batch 3, D = latent_dim 3, H = W = 16; scalars have shape [1]):
   param/<name>                F16  every trainable parameter (named_parameters(), reference names)
   image                       F32  [B,1,H,W]  the image (float32 values, N(0,1))
   mask                        F32  [B,1,H,W]  the annotation, values in {0,1}
   eps                         F32  [B,D]      the posterior's reparameterisation noise
   posterior_mu                F64  [B,D]      q(z|x,y) mean
   posterior_log_sigma         F64  [B,D]      q(z|x,y) log standard deviation
   prior_mu, prior_log_sigma   F64  [B,D]      p(z|x)
   z                           F64  [B,D]      posterior_mu + exp(posterior_log_sigma) * eps
   unet_features               F64  [B,8,H,W]  U-Net output (F[0] channels; training-mode BN)
   logits                      F64  [B,1,H,W]  fcomb(unet_features, z)
   rec                         F64  [1]        sum over all elements of BCEWithLogits(logits, mask)
   kl                          F64  [B]        analytic KL(q_b || p_b), summed over D
   total                       F64  [1]        (rec + beta * sum_b kl_b) / B   (= -elbo)
   reg                         F64  [1]        reg_weight * sum over prior and posterior parameters
                                               (conv W, b, BN gamma, beta) of ||theta||_2 (unsquared)
   loss                        F64  [1]        total + reg
   grad/<name>                 F64  d loss / d parameter, for every param/<name>
   running_after/<name>        F64  every BatchNorm running_mean / running_var after the step
                                    (num_batches_tracked is 1 after it; not stored)
   eval/z_prior                F32  [B,D]      a given prior sample (N(0,1)) for inference
   eval/prior_mu, eval/prior_log_sigma   F64 [B,D]   p(z|x) in eval mode (BN running stats =
                                                     running_after/*)
   eval/posterior_mu, eval/posterior_log_sigma  F64 [B,D]  q(z|x,y) in eval mode, same inputs
   eval/unet_features          F64  [B,8,H,W]  U-Net output in eval mode
   eval/logits                 F64  [B,1,H,W]  fcomb(eval/unet_features, eval/z_prior), eval mode

   Metadata: "config" (JSON), "generator", "torch", "batch", "size".

Sanity checks before writing: the paper parameter count; torch.autograd.gradcheck (float64) of
the loss of a tiny configuration w.r.t. all its parameters, the image and eps; every conv output
channel and every BN channel of the small model gets a non-zero gradient; the F16 weights round-trip.
"""
import argparse
import json
import os
import struct
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_prob_unet_reference import (PAPER_CONFIG, PAPER_PARAMETER_COUNT, GenProbUNetAA,  # noqa: E402
                                     parameter_count, state_dict_listing)

CONFIG = dict(num_filters=[8, 12, 16], convs_per_block=3, latent_dim=3, fcomb_convs=4, beta=10,
              image_channels=1, bn_eps=1e-5, bn_momentum=0.1, reg_weight=1e-5)
BATCH, SIZE = 3, 16
TINY_CONFIG = dict(CONFIG, num_filters=[2, 3], latent_dim=2)

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                           "prob_unet")


def write_safetensors(path, tensors, metadata):
    """The safetensors layout, by hand (the package is not in Debian). tensors: name -> (array,
    dtype string among F16, F32, F64)."""
    codes = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}
    header, blobs, offset = {}, [], 0
    for name, (array, dtype) in tensors.items():
        data = np.ascontiguousarray(array, dtype=codes[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def randomize(model, half=True):
    """Random weights (see the docstring), rounded to float16 when half."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                module.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
                module.bias.normal_(0.0, 0.1)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.normal_(1.0, 0.2)
                module.bias.normal_(0.0, 0.2)
        if half:
            for p in model.parameters():
                p.copy_(p.half().float())


def write_paper_keys():
    model = GenProbUNetAA(PAPER_CONFIG)
    n = parameter_count(model)
    listing = state_dict_listing(model)
    for name, shape, kind in listing:
        print(f"{name}\t{'x'.join(map(str, shape)) or 'scalar'}\t{kind}")
    print("paper configuration: trainable parameters", n)
    assert n == PAPER_PARAMETER_COUNT, f"{n} != {PAPER_PARAMETER_COUNT} (Table 1)"
    path = os.path.join(FIXTURE_DIR, "gen_prob_unet_aa_paper_keys.txt")
    with open(path, "w") as f:
        f.write(f"# state_dict of the Generalized Probabilistic U-Net, AA, paper configuration: "
                f"{n} trainable parameters (Table 1)\n")
        f.write(f"# config {json.dumps(PAPER_CONFIG)}\n")
        f.write("# written by tools/make_prob_unet_fixture.py; name<TAB>shape<TAB>param|buffer\n")
        for name, shape, kind in listing:
            f.write(f"{name}\t{'x'.join(map(str, shape)) or 'scalar'}\t{kind}\n")
    print("wrote", path)


def gradcheck_tiny():
    """float64 gradcheck of the whole training loss of a tiny model (BN in training mode)."""
    torch.manual_seed(7)
    model = GenProbUNetAA(TINY_CONFIG)
    randomize(model, half=False)
    model = model.double().train()
    b, s, d = 2, 8, TINY_CONFIG["latent_dim"]
    image = torch.randn(b, 1, s, s, dtype=torch.float64, requires_grad=True)
    mask = (torch.rand(b, 1, s, s) < 0.5).double()
    eps = torch.randn(b, d, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())

    def loss_fn(image, eps, *ps):
        out = torch.nn.utils.stateless.functional_call(model, dict(zip(names, ps)),
                                                       (image, mask, eps))
        return out["loss"]

    ok = torch.autograd.gradcheck(loss_fn, (image, eps) + params, eps=1e-6, atol=1e-6, rtol=1e-5)
    print("gradcheck (tiny config, float64, training mode, loss w.r.t. image, eps and",
          len(params), "parameter tensors):", ok)
    assert ok


def check_informative(model):
    """Every conv output channel and BN channel has a non-zero gradient (no dead path)."""
    for name, p in model.named_parameters():
        g = p.grad.reshape(p.shape[0], -1) if p.dim() > 1 else p.grad.reshape(-1, 1)
        dead = (g.abs().amax(dim=1) == 0).nonzero().flatten().tolist()
        assert not dead, f"{name}: channels {dead} have zero gradient"


def load_reference(src):
    """The authors' ProbabilisticUnet from their src/ folder (matplotlib stubbed)."""
    for mod in ("matplotlib", "matplotlib.pyplot"):
        sys.modules.setdefault(mod, types.ModuleType(mod))
    sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    sys.path.insert(0, os.path.abspath(src))
    from probabilistic_unet.model import ProbabilisticUnet
    from probabilistic_unet.utils import l2_regularisation
    return ProbabilisticUnet, l2_regularisation


def compare_with_reference(src, initial_state, inputs, ours):
    ProbabilisticUnet, l2_regularisation = load_reference(src)
    cfg = CONFIG
    ref = ProbabilisticUnet(input_channels=cfg["image_channels"], label_channels=1, num_classes=1,
                            num_filters=cfg["num_filters"], latent_dim=cfg["latent_dim"],
                            no_convs_fcomb=cfg["fcomb_convs"], beta=cfg["beta"], gamma=0.0,
                            norm=True)
    ref.load_state_dict(initial_state)
    ref = ref.double().train()
    image, mask, eps, z_prior = inputs
    ref.forward(image, mask, training=True)
    q = ref.posterior_latent_space
    ref.z = q.base_dist.loc + q.base_dist.scale * eps  # inject our eps into the sample
    _, _, _, elbo = ref.elbo(mask, use_mask=False, analytic_kl=True, mc_samples=1000)
    loss = -elbo + cfg["reg_weight"] * (l2_regularisation(ref.posterior) +
                                        l2_regularisation(ref.prior))
    loss.backward()

    def close(a, b, what):
        a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
        err = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-300)
        assert err < 1e-12, f"reference differs in {what}: relative {err}"

    close(ref.reconstruction, ours["logits"], "logits")
    close(ref.kl, ours["kl"].sum(), "kl")
    close(loss, ours["loss"], "loss")
    grads = dict(ours["grads"])
    for name, p in ref.named_parameters():
        close(p.grad, grads[name], "grad/" + name)
    for name, t in ref.state_dict().items():
        if "running" in name:
            close(t, ours["running_after"][name], name)
    ref.eval()
    with torch.no_grad():
        ref.forward(image, None, training=False)
        p = ref.prior_latent_space.base_dist
        close(p.loc, ours["eval/prior_mu"], "eval/prior_mu")
        close(p.scale.log(), ours["eval/prior_log_sigma"], "eval/prior_log_sigma")
        close(ref.fcomb.forward(ref.unet_features, z_prior), ours["eval/logits"], "eval/logits")
    print("the authors' code gives the same numbers (relative difference < 1e-12): logits, kl, "
          "loss, every gradient, running stats after the step, eval prior and logits")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-src", help="src/ folder of the authors' code, to compare with")
    args = parser.parse_args()
    os.makedirs(FIXTURE_DIR, exist_ok=True)

    write_paper_keys()
    gradcheck_tiny()

    torch.manual_seed(20220726)
    model = GenProbUNetAA(CONFIG)
    randomize(model, half=True)
    initial_state = {k: v.clone() for k, v in model.state_dict().items()}
    model = model.double().train()
    d = CONFIG["latent_dim"]
    image = torch.randn(BATCH, 1, SIZE, SIZE).double()  # float32 draws, exact in F32
    # Masks: a disc per case with random centre/radius, plus some flipped pixels.
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    mask = torch.zeros(BATCH, 1, SIZE, SIZE, dtype=torch.float64)
    for b in range(BATCH):
        cy, cx = torch.randint(4, SIZE - 4, (2,)).tolist()
        r = 2.5 + 3.0 * torch.rand(1).item()
        mask[b, 0] = (((yy - cy) ** 2 + (xx - cx) ** 2) <= r * r).double()
    flip = torch.rand(BATCH, 1, SIZE, SIZE) < 0.05
    mask[flip] = 1 - mask[flip]
    eps = torch.randn(BATCH, d).double()
    z_prior = torch.randn(BATCH, d).double()

    margins = []  # smallest |pre-activation| of every ReLU: no kink within rounding distance
    hooks = [m.register_forward_hook(lambda _, inp, __: margins.append(inp[0].abs().min().item()))
             for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    out = model.training_step(image, mask, eps)
    for h in hooks:
        h.remove()
    print(f"smallest |ReLU input| in the training step: {min(margins):.3e}")
    assert min(margins) > 1e-9
    out["loss"].backward()
    check_informative(model)
    grads = [(n, p.grad.detach().clone()) for n, p in model.named_parameters()]
    running_after = {n: t.detach().clone() for n, t in model.state_dict().items()
                     if n.endswith("running_mean") or n.endswith("running_var")}

    model.eval()
    with torch.no_grad():
        ev = model.sample_logits(image, z_prior)
        ev_mu_q, ev_ls_q = model.posterior(image, mask)

    # Report magnitudes (so a reader sees that no path is saturated).
    for key in ("posterior_mu", "posterior_log_sigma", "prior_mu", "prior_log_sigma", "z",
                "logits", "kl"):
        v = out[key].detach()
        print(f"{key:22s} min {v.min().item():+.4f} max {v.max().item():+.4f}")
    print(f"rec {out['rec'].item():.6f} total {out['total'].item():.6f} "
          f"reg {out['reg'].item():.6e} loss {out['loss'].item():.6f}")
    print(f"eval logits min {ev['logits'].min().item():+.4f} max {ev['logits'].max().item():+.4f}")

    tensors = {}
    for name, p in model.named_parameters():
        half = p.detach().numpy().astype(np.float16)
        assert np.array_equal(half.astype(np.float64), p.detach().numpy()), name
        tensors["param/" + name] = (half, "F16")
    tensors["image"] = (image.numpy(), "F32")
    tensors["mask"] = (mask.numpy(), "F32")
    tensors["eps"] = (eps.numpy(), "F32")
    for key in ("posterior_mu", "posterior_log_sigma", "prior_mu", "prior_log_sigma", "z",
                "unet_features", "logits"):
        tensors[key] = (out[key].detach().numpy(), "F64")
    for key in ("rec", "total", "reg", "loss"):
        tensors[key] = (out[key].detach().reshape(1).numpy(), "F64")
    tensors["kl"] = (out["kl"].detach().numpy(), "F64")
    for name, g in grads:
        tensors["grad/" + name] = (g.numpy(), "F64")
    for name, t in running_after.items():
        tensors["running_after/" + name] = (t.numpy(), "F64")
    tensors["eval/z_prior"] = (z_prior.numpy(), "F32")
    tensors["eval/prior_mu"] = (ev["prior_mu"].numpy(), "F64")
    tensors["eval/prior_log_sigma"] = (ev["prior_log_sigma"].numpy(), "F64")
    tensors["eval/posterior_mu"] = (ev_mu_q.numpy(), "F64")
    tensors["eval/posterior_log_sigma"] = (ev_ls_q.numpy(), "F64")
    tensors["eval/unet_features"] = (ev["unet_features"].numpy(), "F64")
    tensors["eval/logits"] = (ev["logits"].numpy(), "F64")
    for name, (array, dtype) in tensors.items():  # F32 inputs are exact
        if dtype == "F32":
            assert np.array_equal(array.astype(np.float32).astype(np.float64), array), name

    if args.reference_src:
        compare_with_reference(args.reference_src, initial_state,
                               (image, mask, eps, z_prior),
                               dict(out, grads=grads, running_after=running_after,
                                    **{"eval/" + k: v for k, v in ev.items()}))

    path = os.path.join(FIXTURE_DIR, "gen_prob_unet_aa_small.safetensors")
    write_safetensors(path, tensors, {"config": json.dumps(CONFIG),
                                      "generator": "tools/make_prob_unet_fixture.py",
                                      "torch": torch.__version__,
                                      "batch": str(BATCH), "size": str(SIZE)})
    print(f"wrote {path}: {parameter_count(model)} parameters, {len(tensors)} tensors, "
          f"{os.path.getsize(path)} bytes")
    for name, (array, dtype) in tensors.items():
        print(f"  {name}\t{dtype}\t{list(array.shape)}")


if __name__ == "__main__":
    main()
