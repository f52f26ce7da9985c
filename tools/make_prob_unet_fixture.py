#!/usr/bin/python3
"""Writes the Generalized Probabilistic U-Net fixtures (variants AA, AA mix, FC, FC mix) under
tests/fixtures/prob_unet/:

    /usr/bin/python3 tools/make_prob_unet_fixture.py                (Debian's torch 1.13)
    /usr/bin/python3 tools/make_prob_unet_fixture.py --variants fc fc_mix   (a subset; default all)
    /usr/bin/python3 tools/make_prob_unet_fixture.py --reference-src DIR
        also runs the authors' code (DIR = the src/ folder of
        ishaanb92/GeneralizedProbabilisticUNet, e.g. from `git archive HEAD src`) on the same
        weights, inputs and noise and checks that it
        gives the same numbers; needs no matplotlib (stubbed). Nothing of it is imported otherwise.

The model is tools/gen_prob_unet_reference.py (our re-implementation of the reference's semantics;
module names = the reference's state_dict names; its docstring gives the formulas). Per variant V
in {aa, aa_mix, fc, fc_mix} the script writes:

1. gen_prob_unet_V_paper_keys.txt: the state_dict of the paper configuration (F=[32,64,128,256],
   1 image channel; AA: D=6; AA mix: D=4, K=5; FC: D=2; FC mix: D=2, K=9), one
   "name<TAB>shape<TAB>param|buffer" line each (shape "AxBx..", "scalar" for 0-d); the script
   asserts the trainable parameter counts of Table 1: 6,847,129 / 6,864,027 / 6,844,945 / 6,882,467.

2. gen_prob_unet_V_small.safetensors: one training step and one inference pass at a small
   configuration (VARIANTS below; also in the metadata key "config" as JSON), B=3 cases of 16x16.
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

   AA file (B = batch 3, D = latent_dim 3, H = W = 16; scalars have shape [1]):
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

   AA mix, FC, FC mix files (D = 3; K = n_components = 3 for the mixtures, tau = temperature 0.5,
   S = mc_samples 8, beta 1; NO L2 regulariser: total and d total / d theta only). As AA's where
   the names agree; [K,] marks an axis that only the mixtures have. FC only: *_cov_tril_raw,
   *_scale_tril. Mixtures only: *_mixture_logits, z_components, z_relaxed, z_component, gumbel,
   kl_eps, kl_gumbel, kl_z, kl_relaxed, kl_log_q, kl_log_p.
   param/<name>                F16  every trainable parameter
   image, mask                 F32  [B,1,H,W]
   eps                         F32  [B,[K,]D]  the reconstruction sample's N(0,1) noise (per
                                               component)
   gumbel                      F32  [B,K]      its Gumbel(0,1) noise
   kl_eps                      F32  [S,B,K,D]  the Monte Carlo KL samples' N(0,1) noise
   kl_gumbel                   F32  [S,B,K]    their Gumbel(0,1) noise
   posterior_mu                F64  [B,[K,]D]  q(z|x,y): component means
   posterior_log_sigma         F64  [B,[K,]D]  log sigma (AA: log std dev; FC: log(diag L - 1e-4))
   posterior_cov_tril_raw      F64  [B,[K,]D,D] the cov_tril_op output, row-major, ALL D*D entries
                                               (only the strictly lower ones are used)
   posterior_scale_tril        F64  [B,[K,]D,D] L = strictly-lower(raw)
                                               + diag(exp(log sigma) + 1e-4)
   posterior_mixture_logits    F64  [B,K]      the raw mixture_weights_conv output
   prior_*                     F64             p(z|x), the same set
   z_components                F64  [B,K,D]    s_k = mu_k + sigma_k eps_k (AA mix),
                                               mu_k + L_k eps_k (FC mix)
   z_relaxed                   F64  [B,K]      r = softmax((log_softmax(posterior_mixture_logits)
                                               + gumbel) / tau)
   z_component                 I64  [B]        argmax_k r (the component that z is drawn from)
   z                           F64  [B,D]      the reconstruction sample: K = 1: s_0;
                                               K > 1: sum_k (onehot - r.detach() + r)_k s_k
   unet_features, logits       F64             as AA
   rec, total                  F64  [1]        as AA (total = (rec + beta * sum_b kl_b) / B)
   kl                          F64  [B]        FC: analytic KL(q_b || p_b); mixtures:
                                               (1/S) sum_s (kl_log_q - kl_log_p)[s, b]
   kl_z                        F64  [S,B,D]    the KL samples z_s (drawn like z, from kl_eps[s],
                                               kl_gumbel[s]; independent of z)
   kl_relaxed                  F64  [S,B,K]    their r
   kl_log_q, kl_log_p          F64  [S,B]      log q_b(z_s), log p_b(z_s) (mixture log-densities)
   grad/<name>                 F64  d total / d parameter (straight-through estimator for the
                                    mixtures; cov_tril_op entries on or above the diagonal: 0)
   running_after/<name>        F64  as AA
   eval/z_prior                F32  [B,D]      a given prior sample (N(0,1))
   eval/prior_*                F64             p(z|x) in eval mode (the prior_* set)
   eval/prior_log_prob         F64  [B]        log p(eval/z_prior | x) in eval mode
   eval/posterior_*            F64             q(z|x,y) in eval mode (the posterior_* set)
   eval/unet_features, eval/logits  F64        as AA
   Metadata: "config" (JSON), "variant", "noise_order", "generator", "torch", "batch", "size",
   "mc_samples" (mixtures).

   Noise consumption order (the reference's: the model's forward draws the reconstruction sample,
   then elbo() draws the S KL samples; each MixtureOfGaussians.rsample draws the categorical's
   uniforms, turned into Gumbel noise, before the components' normals). A C++ side that draws from
   one stream must consume, in this order, each tensor in row-major (C) order:
     K = 1 (FC):  eps [B,D]
     K > 1:       gumbel [B,K], eps [B,K,D], kl_gumbel [S,B,K], kl_eps [S,B,K,D]
   (The prior draws nothing in training; eval/z_prior is an input.)

Sanity checks before writing: the paper parameter counts; torch.autograd.gradcheck (float64) of
the loss (AA) / total of a tiny configuration of each variant w.r.t. all its parameters, the image
and every noise input (mixtures: with the straight-through one-hot and r.detach() frozen at the
evaluation point, a function whose true derivative is the straight-through gradient; its value and
autograd gradient are first checked to equal the unfrozen model's); our densities and KLs against
torch.distributions (MixtureSameFamily, MultivariateNormal, kl_divergence); every conv output
channel and every BN channel of the small model gets a non-zero gradient (except cov_tril_op's
discarded entries, which must get exactly 0); the F16 weights and F32 inputs round-trip.
"""
import argparse
import contextlib
import json
import os
import struct
import sys
import types

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_prob_unet_reference import (PAPER_VARIANTS, GenProbUNet, n_components,  # noqa: E402
                                     parameter_count, state_dict_listing)

CONFIG = dict(num_filters=[8, 12, 16], convs_per_block=3, latent_dim=3, fcomb_convs=4, beta=10,
              image_channels=1, bn_eps=1e-5, bn_momentum=0.1, reg_weight=1e-5)
BATCH, SIZE = 3, 16
TINY_CONFIG = dict(CONFIG, num_filters=[2, 3], latent_dim=2)


def _small(covariance, k):
    cfg = dict(num_filters=[8, 12, 16], convs_per_block=3, latent_dim=3, covariance=covariance,
               n_components=k)
    if k > 1:
        # tau 0.5 (the top of the reference's tuning range U(0.1, 0.5)): exact in float32 (the
        # reference makes tau a float32 tensor) and a larger straight-through gradient than 0.1.
        cfg.update(temperature=0.5, mc_samples=8)
    cfg.update(fcomb_convs=4, beta=1.0, image_channels=1, bn_eps=1e-5, bn_momentum=0.1)
    return cfg


# variant -> (label, small config, seed). AA's entries are those of the original AA fixture. The
# other seeds were picked so that no channel is dead, no ReLU input is near 0 and the
# reconstruction samples of the mixtures come from three different components.
VARIANTS = {
    "aa": ("AA", CONFIG, 20220726),
    "aa_mix": ("AA mix", _small("diagonal", 3), 20221077),
    "fc": ("FC", _small("full", 1), 20220728),
    "fc_mix": ("FC mix", _small("full", 3), 20220749),
}

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                           "prob_unet")


def write_safetensors(path, tensors, metadata):
    """The safetensors layout, by hand (the package is not in Debian). tensors: name -> (array,
    dtype string among F16, F32, F64, I64)."""
    codes = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I64": "<i8"}
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


def gumbel_noise(*shape):
    """Gumbel(0, 1) draws -log(-log(u)), u ~ U(0, 1), computed and kept in float32."""
    g = -torch.log(-torch.log(torch.rand(*shape)))
    assert torch.isfinite(g).all()
    return g.double()


def draw_noise(cfg, b):
    """The posterior's noise for one training step, in the consumption order."""
    k, d = n_components(cfg), cfg["latent_dim"]
    if k == 1:
        return {"eps": torch.randn(b, d).double()}
    s = cfg["mc_samples"]
    noise = {"gumbel": gumbel_noise(b, k), "eps": torch.randn(b, k, d).double()}
    noise["kl_gumbel"] = gumbel_noise(s, b, k)
    noise["kl_eps"] = torch.randn(s, b, k, d).double()
    return noise


def write_paper_keys(variant):
    label = VARIANTS[variant][0]
    config, expected = PAPER_VARIANTS[variant]
    model = GenProbUNet(config)
    n = parameter_count(model)
    listing = state_dict_listing(model)
    if variant == "aa":
        for name, shape, kind in listing:
            print(f"{name}\t{'x'.join(map(str, shape)) or 'scalar'}\t{kind}")
    print(f"paper configuration ({label}): trainable parameters", n)
    assert n == expected, f"{n} != {expected} (Table 1)"
    path = os.path.join(FIXTURE_DIR, f"gen_prob_unet_{variant}_paper_keys.txt")
    with open(path, "w") as f:
        f.write(f"# state_dict of the Generalized Probabilistic U-Net, {label}, paper configuration: "
                f"{n} trainable parameters (Table 1)\n")
        f.write(f"# config {json.dumps(config)}\n")
        f.write("# written by tools/make_prob_unet_fixture.py; name<TAB>shape<TAB>param|buffer\n")
        for name, shape, kind in listing:
            f.write(f"{name}\t{'x'.join(map(str, shape)) or 'scalar'}\t{kind}\n")
    print("wrote", path)
    return listing


def gradcheck_tiny():
    """float64 gradcheck of the whole training loss of a tiny AA model (BN in training mode)."""
    torch.manual_seed(7)
    model = GenProbUNet(TINY_CONFIG)
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


def tiny_variant_config(variant):
    cfg = dict(VARIANTS[variant][1], num_filters=[2, 3], latent_dim=2)
    if n_components(cfg) > 1:
        cfg.update(n_components=2, mc_samples=3)
    return cfg


def gradcheck_tiny_variant(variant):
    """float64 gradcheck of total of a tiny model of a variant w.r.t. every parameter, the image
    and every noise input. Mixtures: the straight-through estimator's value does not depend on r
    (the one-hot), so its autograd gradient is not the derivative of the forward value. With the
    one-hot and r.detach() frozen at the evaluation point (straight_through(frozen=...)), the
    function has the same value and autograd gradient there, and its true derivative is the
    straight-through gradient, which gradcheck then checks against finite differences."""
    cfg = tiny_variant_config(variant)
    torch.manual_seed(8)
    model = GenProbUNet(cfg)
    randomize(model, half=False)
    model = model.double().train()
    b, s = 2, 8
    image = torch.randn(b, 1, s, s, dtype=torch.float64)
    mask = (torch.rand(b, 1, s, s) < 0.5).double()
    noise = draw_noise(cfg, b)
    keys = list(noise)
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone() for p in model.parameters())

    def total_fn(frozen, image, *rest):
        noise_in = dict(zip(keys, rest[:len(keys)]))
        ps = rest[len(keys):]
        out = torch.nn.utils.stateless.functional_call(
            model, dict(zip(names, ps)), (image, mask, noise_in), dict(frozen=frozen))
        return out

    inputs = tuple(t.clone().requires_grad_(True) for t in (image, *noise.values(), *params))
    plain = total_fn(None, *inputs)
    frozen = None
    if n_components(cfg) > 1:
        def freeze(r):
            hard = torch.nn.functional.one_hot(r.argmax(-1), r.shape[-1]).to(r.dtype)
            return hard, r.detach().clone()
        frozen = {"rec": freeze(plain["z_relaxed"]), "kl": freeze(plain["kl_relaxed"])}
        again = total_fn(frozen, *inputs)
        g_plain = torch.autograd.grad(plain["total"], inputs)
        g_frozen = torch.autograd.grad(again["total"], inputs)
        assert torch.equal(plain["total"], again["total"])
        assert all(torch.equal(x, y) for x, y in zip(g_plain, g_frozen))
    ok = torch.autograd.gradcheck(lambda *xs: total_fn(frozen, *xs)["total"], inputs,
                                  eps=1e-6, atol=1e-6, rtol=1e-5)
    print(f"gradcheck ({variant}, tiny config, float64, training mode, total w.r.t. image, "
          f"{', '.join(keys)} and {len(params)} parameter tensors"
          f"{'; straight-through frozen at the point' if frozen else ''}):", ok)
    assert ok


def check_distributions(cfg, out, ev, z_prior):
    """Our log-densities and KLs against torch.distributions on the fixture's numbers."""
    D = torch.distributions
    k = n_components(cfg)

    def dist(prefix, src):
        mu = src[prefix + "_mu"]
        if cfg["covariance"] == "full":
            comp = D.MultivariateNormal(mu, scale_tril=src[prefix + "_scale_tril"])
        else:
            comp = D.Independent(D.Normal(mu, torch.exp(src[prefix + "_log_sigma"])), 1)
        if k == 1:
            return comp
        return D.MixtureSameFamily(D.Categorical(logits=src[prefix + "_mixture_logits"]), comp)

    worst = 0.0

    def close(a, b, what):
        nonlocal worst
        err = (a - b).abs().max().item() / b.abs().max().item()
        worst = max(worst, err)
        assert err < 1e-13, f"{what}: relative {err}"

    with torch.no_grad():
        out = {key: v.detach() for key, v in out.items()}
        q, p = dist("posterior", out), dist("prior", out)
        if k == 1:
            close(out["kl"], D.kl_divergence(q, p), "analytic kl")
        else:
            close(out["kl_log_q"], q.log_prob(out["kl_z"]), "log q")
            close(out["kl_log_p"], p.log_prob(out["kl_z"]), "log p")
            close(out["kl"], (q.log_prob(out["kl_z"]) - p.log_prob(out["kl_z"])).mean(0), "mc kl")
        close(ev["prior_log_prob"], dist("prior", ev).log_prob(z_prior), "eval log p")
    print(f"densities and KL agree with torch.distributions (relative {worst:.1e})")


def check_informative(model):
    """Every conv output channel and BN channel has a non-zero gradient (no dead path); the
    cov_tril_op channels of entries on or above the diagonal are discarded and get exactly 0."""
    for name, p in model.named_parameters():
        g = p.grad.reshape(p.shape[0], -1) if p.dim() > 1 else p.grad.reshape(-1, 1)
        live = g.abs().amax(dim=1) != 0
        expected = torch.ones_like(live)
        if ".cov_tril_op." in name:
            d = model.cfg["latent_dim"]
            entry = torch.arange(p.shape[0]) % (d * d)
            expected = entry // d > entry % d  # row > column
        wrong = (live != expected).nonzero().flatten().tolist()
        assert not wrong, f"{name}: channels {wrong} have an unexpected (zero or non-zero) gradient"


def load_reference(src):
    """The authors' ProbabilisticUnet from their src/ folder (matplotlib stubbed)."""
    for mod in ("matplotlib", "matplotlib.pyplot"):
        sys.modules.setdefault(mod, types.ModuleType(mod))
    sys.modules["matplotlib"].pyplot = sys.modules["matplotlib.pyplot"]
    sys.path.insert(0, os.path.abspath(src))
    from probabilistic_unet.model import ProbabilisticUnet
    from probabilistic_unet.utils import l2_regularisation
    return ProbabilisticUnet, l2_regularisation


def reference_model(ProbabilisticUnet, cfg):
    return ProbabilisticUnet(input_channels=cfg["image_channels"], label_channels=1, num_classes=1,
                             num_filters=cfg["num_filters"], latent_dim=cfg["latent_dim"],
                             no_convs_fcomb=cfg["fcomb_convs"], beta=cfg["beta"], gamma=0.0,
                             norm=True, full_cov=cfg.get("covariance") == "full",
                             n_components=n_components(cfg),
                             temperature=cfg.get("temperature", 0.1))


def _close(a, b, what, tol=1e-12):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} != {tuple(b.shape)}"
    err = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-300)
    assert err < tol, f"reference differs in {what}: relative {err}"
    return err


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

    close = _close
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


@contextlib.contextmanager
def injected_noise(uniforms, normals):
    """Makes torch.distributions draw the given tensors, in order: torch.rand (the
    RelaxedOneHotCategorical's uniforms) and _standard_normal (Normal and MultivariateNormal)."""
    import torch.distributions.multivariate_normal as mvn_module
    import torch.distributions.normal as normal_module
    uniforms, normals = list(uniforms), list(normals)

    def take(queue, what, shape, dtype):
        assert queue, f"the reference draws more {what} than given"
        t = queue.pop(0)
        assert tuple(shape) == tuple(t.shape), f"{what}: asked {tuple(shape)}, have {t.shape}"
        return t.to(dtype).clone()

    saved = (torch.rand, normal_module._standard_normal, mvn_module._standard_normal)
    torch.rand = lambda shape, dtype=None, device=None: take(uniforms, "uniforms", shape, dtype)
    fake_normal = lambda shape, dtype, device: take(normals, "normals", shape, dtype)  # noqa: E731
    normal_module._standard_normal = mvn_module._standard_normal = fake_normal
    try:
        yield
    finally:
        torch.rand, normal_module._standard_normal, mvn_module._standard_normal = saved
    assert not uniforms and not normals, "the reference drew less noise than given"


def compare_variant_with_reference(src, variant, initial_state, image, mask, noise, z_prior, ours):
    """The authors' model on the same weights, inputs and noise (injected into its samplers)."""
    ProbabilisticUnet, _ = load_reference(src)
    cfg = VARIANTS[variant][1]
    k, full = n_components(cfg), cfg["covariance"] == "full"

    # The paper configuration's state_dict (names, shapes, order) is the reference's.
    paper = reference_model(ProbabilisticUnet, PAPER_VARIANTS[variant][0])
    assert [(n, tuple(t.shape)) for n, t in paper.state_dict().items()] == \
        [(n, s) for n, s, _ in state_dict_listing(GenProbUNet(PAPER_VARIANTS[variant][0]))]
    del paper

    ref = reference_model(ProbabilisticUnet, cfg)
    ref.load_state_dict(initial_state)  # strict: the same names and shapes
    ref = ref.double().train()
    raw = {}  # the latest raw outputs of the heads' 1x1 convs
    for net in ("prior", "posterior"):
        for conv in ("mixture_weights_conv", "cov_tril_op"):
            if hasattr(getattr(ref, net), conv):
                getattr(getattr(ref, net), conv).register_forward_hook(
                    lambda _m, _i, o, key=f"{net}_{conv}": raw.__setitem__(key, o.flatten(1)))
    # The reference turns uniforms u into Gumbel noise -log(-log u): u = exp(-exp(-g)).
    if k == 1:
        uniforms, normals = [], [noise["eps"]]
    else:
        uniforms = [torch.exp(-torch.exp(-noise[key])) for key in ("gumbel", "kl_gumbel")]
        normals = [noise["eps"], noise["kl_eps"]]
    with injected_noise(uniforms, normals):
        ref.forward(image, mask, training=True)
        _, _, _, elbo = ref.elbo(mask, use_mask=False, analytic_kl=k == 1,
                                 mc_samples=cfg.get("mc_samples", 1000))
    total = -elbo
    total.backward()

    errs = []

    def close(a, b, what):
        errs.append(_close(a, b, what))

    def check_latent(dist, src, prefix, net):
        comp = dist if k == 1 else dist.component_distribution
        if full:
            close(comp.loc, src[prefix + "_mu"], prefix + "_mu")
            close(comp.scale_tril, src[prefix + "_scale_tril"], prefix + "_scale_tril")
            close(raw[net + "_cov_tril_op"], src[prefix + "_cov_tril_raw"].flatten(1),
                  prefix + "_cov_tril_raw")
        else:
            close(comp.base_dist.loc, src[prefix + "_mu"], prefix + "_mu")
            close(comp.base_dist.scale, torch.exp(src[prefix + "_log_sigma"]), prefix + "_sigma")
        if k > 1:
            close(raw[net + "_mixture_weights_conv"], src[prefix + "_mixture_logits"],
                  prefix + "_mixture_logits")

    check_latent(ref.posterior_latent_space, ours, "posterior", "posterior")
    check_latent(ref.prior_latent_space, ours, "prior", "prior")
    close(ref.z, ours["z"], "z")
    close(ref.unet_features, ours["unet_features"], "unet_features")
    close(ref.reconstruction, ours["logits"], "logits")
    close(ref.reconstruction_loss, ours["rec"], "rec")
    close(ref.kl, ours["kl"].sum(), "kl")
    close(total, ours["total"], "total")
    grads = dict(ours["grads"])
    for name, p in ref.named_parameters():
        close(p.grad, grads[name], "grad/" + name)
    for name, t in ref.state_dict().items():
        if "running" in name:
            close(t, ours["running_after"][name], name)
    ref.eval()
    with torch.no_grad():
        ref.forward(image, None, training=False)
        check_latent(ref.prior_latent_space, ours, "eval/prior", "prior")
        close(ref.prior_latent_space.log_prob(z_prior), ours["eval/prior_log_prob"],
              "eval/prior_log_prob")
        close(ref.unet_features, ours["eval/unet_features"], "eval/unet_features")
        close(ref.fcomb.forward(ref.unet_features, z_prior), ours["eval/logits"], "eval/logits")
        _, q_eval = ref.posterior.forward(image, mask)
        check_latent(q_eval, ours, "eval/posterior", "posterior")
    print(f"the authors' code ({variant}; noise injected into its samplers) gives the same numbers "
          f"(largest relative difference {max(errs):.1e}): state_dict names and shapes of the "
          f"paper configuration, posterior and prior parameters, z, features, logits, rec, kl, "
          f"total, "
          f"every gradient, running stats after the step, eval prior, log p(z_prior), features, "
          f"logits, eval posterior")


def make_fixture(variant, args):
    label, cfg, seed = VARIANTS[variant]
    aa = variant == "aa"
    k, d = n_components(cfg), cfg["latent_dim"]
    torch.manual_seed(seed)
    model = GenProbUNet(cfg)
    randomize(model, half=True)
    initial_state = {key: v.clone() for key, v in model.state_dict().items()}
    model = model.double().train()
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
    noise = draw_noise(cfg, BATCH)
    z_prior = torch.randn(BATCH, d).double()

    margins = []  # smallest |pre-activation| of every ReLU: no kink within rounding distance
    hooks = [m.register_forward_hook(lambda _, inp, __: margins.append(inp[0].abs().min().item()))
             for m in model.modules() if isinstance(m, torch.nn.ReLU)]
    out = model.training_step(image, mask, noise)
    for h in hooks:
        h.remove()
    print(f"[{variant}] smallest |ReLU input| in the training step: {min(margins):.3e}")
    assert min(margins) > 1e-9
    out["loss" if aa else "total"].backward()
    check_informative(model)
    grads = [(n, p.grad.detach().clone()) for n, p in model.named_parameters()]
    running_after = {n: t.detach().clone() for n, t in model.state_dict().items()
                     if n.endswith("running_mean") or n.endswith("running_var")}

    model.eval()
    with torch.no_grad():
        ev = model.sample_logits(image, z_prior)
        ev_q = model.posterior(image, mask).outputs("posterior")
    if not aa:
        check_distributions(cfg, out, ev, z_prior)

    # Report magnitudes (so a reader sees that no path is saturated).
    for key in ("posterior_mu", "posterior_log_sigma", "prior_mu", "prior_log_sigma",
                "posterior_cov_tril_raw", "posterior_mixture_logits", "z_relaxed", "z", "logits",
                "kl"):
        if key in out:
            v = out[key].detach()
            print(f"{key:24s} min {v.min().item():+.4f} max {v.max().item():+.4f}")
    if k > 1:
        # The component choice argmax_k (log_softmax(logits) + g)_k must not be a near tie.
        with torch.no_grad():
            log_w = torch.log_softmax(out["posterior_mixture_logits"], dim=-1)
            scores = torch.cat([log_w + noise["gumbel"],
                                (log_w + noise["kl_gumbel"]).flatten(0, 1)])
            top2 = scores.topk(2, dim=-1).values
            gap = (top2[:, 0] - top2[:, 1]).min().item()
        print(f"z_component {out['z_component'].tolist()}, KL samples' components "
              f"{out['kl_relaxed'].argmax(-1).flatten().bincount(minlength=k).tolist()} (counts); "
              f"smallest top-2 score gap {gap:.3e}")
        assert gap > 1e-3
    if aa:
        print(f"rec {out['rec'].item():.6f} total {out['total'].item():.6f} "
              f"reg {out['reg'].item():.6e} loss {out['loss'].item():.6f}")
    else:
        print(f"rec {out['rec'].item():.6f} kl {out['kl'].sum().item():.6f} "
              f"total {out['total'].item():.6f}")
    print(f"eval logits min {ev['logits'].min().item():+.4f} max {ev['logits'].max().item():+.4f}")

    def f64(t):
        return (t.detach().numpy(), "F64")

    tensors = {}
    for name, p in model.named_parameters():
        half = p.detach().numpy().astype(np.float16)
        assert np.array_equal(half.astype(np.float64), p.detach().numpy()), name
        tensors["param/" + name] = (half, "F16")
    tensors["image"] = (image.numpy(), "F32")
    tensors["mask"] = (mask.numpy(), "F32")
    for key in ("eps", "gumbel", "kl_eps", "kl_gumbel"):
        if key in noise:
            tensors[key] = (noise[key].numpy(), "F32")
    latent_keys = [key for key in out if key.startswith(("posterior_", "prior_"))]
    if aa:
        keys = latent_keys + ["z", "unet_features", "logits"]
    else:
        keys = latent_keys + [key for key in ("z_components", "z_relaxed") if key in out]
    for key in keys:
        tensors[key] = f64(out[key])
    if not aa:
        if k > 1:
            tensors["z_component"] = (out["z_component"].numpy().astype(np.int64), "I64")
        for key in ("z", "unet_features", "logits"):
            tensors[key] = f64(out[key])
    for key in (("rec", "total", "reg", "loss") if aa else ("rec", "total")):
        tensors[key] = (out[key].detach().reshape(1).numpy(), "F64")
    tensors["kl"] = f64(out["kl"])
    for key in ("kl_z", "kl_relaxed", "kl_log_q", "kl_log_p"):
        if key in out:
            tensors[key] = f64(out[key])
    for name, g in grads:
        tensors["grad/" + name] = (g.numpy(), "F64")
    for name, t in running_after.items():
        tensors["running_after/" + name] = (t.numpy(), "F64")
    tensors["eval/z_prior"] = (z_prior.numpy(), "F32")
    for key in ev:
        if key.startswith("prior_") and (key != "prior_log_prob" or not aa):
            tensors["eval/" + key] = f64(ev[key])
    for key in ev_q:
        tensors["eval/" + key] = f64(ev_q[key])
    tensors["eval/unet_features"] = f64(ev["unet_features"])
    tensors["eval/logits"] = f64(ev["logits"])
    for name, (array, dtype) in tensors.items():  # F32 inputs are exact
        if dtype == "F32":
            assert np.array_equal(array.astype(np.float32).astype(np.float64), array), name

    if args.reference_src:
        ours = dict(out, grads=grads, running_after=running_after,
                    **{"eval/" + key: v for key, v in ev.items()},
                    **{"eval/" + key: v for key, v in ev_q.items()})
        if aa:
            compare_with_reference(args.reference_src, initial_state,
                                   (image, mask, noise["eps"], z_prior), ours)
        else:
            compare_variant_with_reference(args.reference_src, variant, initial_state, image, mask,
                                           noise, z_prior, ours)

    path = os.path.join(FIXTURE_DIR, f"gen_prob_unet_{variant}_small.safetensors")
    metadata = {"config": json.dumps(cfg)}
    if not aa:
        metadata["variant"] = variant
        metadata["noise_order"] = ", ".join(noise)
    metadata.update({"generator": "tools/make_prob_unet_fixture.py", "torch": torch.__version__,
                     "batch": str(BATCH), "size": str(SIZE)})
    if k > 1:
        metadata["mc_samples"] = str(cfg["mc_samples"])
    write_safetensors(path, tensors, metadata)
    size = os.path.getsize(path)
    print(f"wrote {path}: {parameter_count(model)} parameters, {len(tensors)} tensors, "
          f"{size} bytes")
    assert size < 1 << 20
    for name, (array, dtype) in tensors.items():
        print(f"  {name}\t{dtype}\t{list(array.shape)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference-src", help="src/ folder of the authors' code, to compare with")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which fixtures to write (default: all)")
    args = parser.parse_args()
    os.makedirs(FIXTURE_DIR, exist_ok=True)

    for variant in args.variants:
        write_paper_keys(variant)
    for variant in args.variants:
        if variant == "aa":
            gradcheck_tiny()
        else:
            gradcheck_tiny_variant(variant)
    for variant in args.variants:
        make_fixture(variant, args)


if __name__ == "__main__":
    main()
