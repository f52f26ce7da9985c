#!/usr/bin/python3
"""The Generalized Probabilistic U-Net (Bhat et al. 2022) in PyTorch: the variants "AA"
(axis-aligned Gaussian, the Probabilistic U-Net of the Christensen et al. baselines), "AA mix"
(mixture of axis-aligned Gaussians), "FC" (full-covariance Gaussian) and "FC mix" (mixture of
full-covariance Gaussians).

Our own re-implementation of the semantics of the reference code
(github.com/ishaanb92/GeneralizedProbabilisticUNet, src/probabilistic_unet/{model,unet,unet_blocks,
utils,mog}.py, trained by scripts/train.py). Module and parameter names are the reference's
state_dict names, so a reference checkpoint loads into it unchanged and ambiseg's C++ model can
use the same names:

    unet.contracting_path.{i}.layers.{k}.*          U-Net down blocks
    unet.upsampling_path.{j}.conv_block.layers.{k}.* U-Net up blocks (j = 0 is the deepest)
    prior.encoder.layers.{k}.*                       p(z | x): encoder
    prior.conv_layer.*                               AA heads: mu and log sigma
    prior.mean_log_sigma_op.*, prior.cov_tril_op.*   FC heads: mu and log sigma; raw Cholesky factor
    prior.mixture_weights_conv.*                     mixtures only: the component logits
    posterior.*                                      q(z | x, y): the same names
    fcomb.layers.{k}.*, fcomb.last_layer.*           the 1x1 decoder on [features, z]

The index k counts every entry of an nn.Sequential, parameterless ones (AvgPool2d, ReLU) included,
as in the reference. Example (3 convs per block): a down block with pooling is
[AvgPool 0, Conv 1, ReLU 2, Conv 3, ReLU 4, Conv 5, ReLU 6, BatchNorm 7]; without pooling
[Conv 0, ReLU 1, Conv 2, ReLU 3, Conv 4, ReLU 5, BatchNorm 6].

Semantics (all as in the reference):
* U-Net down block: [AvgPool2d(2, 2, ceil_mode=True) if level > 0] -> 3 x (Conv3x3 pad 1 + ReLU) ->
  BatchNorm2d. BN comes after the last ReLU; every down block has it.
* U-Net up block: up = bilinear x2 (align_corners=True) of the deeper output; cat([up, skip]) (up
  first); then 3 x (Conv3x3 + ReLU) -> BatchNorm2d, except the last (full resolution) up block,
  which has no BN. No last 1x1 layer: the output is the F[0]-channel feature map.
* Encoder (prior and posterior): per level i, [AvgPool2d(2, 2, ceil_mode=True) if i > 0] ->
  convs_per_block x (Conv3x3 + ReLU) -> BatchNorm2d if i < last level. The posterior's input is
  cat([image, mask]) with the mask raw in {0, 1}.
* Heads (K = n_components, D = latent_dim): h = mean over H and W of the encoder output
  ([B, F[-1]]); every head is a 1x1 conv of h.
  - AA: conv_layer (F[-1] -> 2KD), viewed as [B, K, 2D]; per component, channels [0, D) are mu and
    [D, 2D) are log sigma (channel k*2D + j); sigma = exp(log sigma).
  - FC: mean_log_sigma_op (F[-1] -> 2KD), laid out as AA's conv_layer, and cov_tril_op
    (F[-1] -> K*D*D), viewed as raw[B, K, D, D] row-major (channel k*D*D + r*D + c -> raw[k][r][c]).
    L = strictly-lower part of raw (the diagonal and the upper part of raw are discarded)
        + diag(exp(log sigma) + 1e-4);  Sigma = L L^T.
  - Mixtures (K > 1): mixture_weights_conv (F[-1] -> K) gives the component logits; the mixing
    weights are softmax(logits).
* Densities. Diagonal component: log N(z; mu, sigma) = sum_d [-(z - mu)^2 / (2 sigma^2) - log sigma
  - log(2 pi) / 2].
  Full: log N(z; mu, L) = -||L^-1 (z - mu)||^2 / 2 - sum_d log L_dd - D log(2 pi) / 2.
  Mixture: log q(z) = logsumexp_k [log N_k(z) + log_softmax(logits)_k].
* Sampling (reparameterised; every random draw is an explicit input):
  - component k: s_k = mu_k + sigma_k * eps_k (AA) or mu_k + L_k eps_k (FC), eps ~ N(0, I_D).
  - K = 1: z = s_0.
  - K > 1, straight-through Gumbel-softmax (mog.py): g ~ Gumbel(0, 1) per component,
      r = softmax((log_softmax(logits) + g) / tau)       (the relaxed one-hot sample)
      w = onehot(argmax r) - stop_gradient(r) + r          (forward: the one-hot; backward: dr)
      z = sum_k w_k s_k                                    (all K components are sampled)
    So the forward value is the sample of component argmax_k(logits_k + g_k) and the gradient
    reaches the logits through r. tau only affects gradients.
* Fcomb: cat([features, z broadcast over H x W]) (features first) -> Conv1x1(F[0]+D -> F[0]), ReLU,
  then (fcomb_convs - 2) x [BatchNorm2d, Conv1x1, ReLU], then last_layer Conv1x1(F[0] -> 1).
* Loss (train.py with one annotation, gamma = 0):
    rec   = sum over b, h, w of BCEWithLogits(logits, mask)
    kl_b  = K = 1: KL(q_b || p_b), analytic
                   AA: sum_d [log sigma_p - log sigma_q
                              + (sigma_q^2 + (mu_q - mu_p)^2) / (2 sigma_p^2) - 1/2]
                   FC: sum_d log Lp_dd - sum_d log Lq_dd
                       + (||Lp^-1 Lq||_F^2 + ||Lp^-1 (mu_q - mu_p)||^2 - D) / 2
            K > 1: Monte Carlo with S = mc_samples fresh posterior samples z_s (the sampling above,
                   with its own noise; not the reconstruction sample):
                   kl_b = (1/S) sum_s [log q_b(z_s) - log p_b(z_s)]
                   (gradients flow through z_s, straight-through for the component choice, and
                   through both log-densities)
    total = (rec + beta * sum_b kl_b) / B                   (= -elbo)
    reg   = reg_weight * sum over parameters theta of prior and posterior of ||theta||_2
            (the unsquared Frobenius norm of each tensor: conv weights, biases, BN gamma and beta)
    loss  = total + reg
  beta: 10 for AA (paper), 1 for the other variants (the code's value).
  (The reference also uses Adam with weight_decay 1e-5; that is the optimiser, not this loss.)
* BatchNorm: eps 1e-5, momentum 0.1; training mode uses the batch statistics (biased variance) and
  updates running_mean/var with the unbiased variance; eval mode uses the running statistics.

Config keys beyond AA's: "covariance" ("diagonal" | "full", default "diagonal"), "n_components"
(K, default 1), for K > 1 "temperature" (tau; the reference's default is 0.1) and "mc_samples" (S;
1000 in train.py). Note: the reference builds tau as torch.Tensor([tau]), i.e. float32, so in a
float64 run it uses float32(tau) (0.1 -> 0.10000000149...); here tau is used as given.

Run: /usr/bin/python3 tools/gen_prob_unet_reference.py [aa|aa_mix|fc|fc_mix]
(prints the state_dict of the paper configuration of a variant, default aa, and checks its
parameter count against Table 1.)
"""
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# The paper's AA configuration (Table 1: 6,847,129 trainable parameters).
PAPER_CONFIG = dict(num_filters=[32, 64, 128, 256], convs_per_block=3, latent_dim=6,
                    fcomb_convs=4, beta=10.0, image_channels=1, bn_eps=1e-5, bn_momentum=0.1,
                    reg_weight=1e-5)
PAPER_PARAMETER_COUNT = 6847129


def _paper_variant(latent_dim, covariance, n_components=1):
    cfg = dict(PAPER_CONFIG, latent_dim=latent_dim, beta=1.0)
    cfg.update(covariance=covariance, n_components=n_components)
    if n_components > 1:
        cfg.update(temperature=0.1, mc_samples=1000)
    return cfg


# The paper's configurations and Table 1 parameter counts, per variant.
PAPER_VARIANTS = {
    "aa": (PAPER_CONFIG, PAPER_PARAMETER_COUNT),
    "aa_mix": (_paper_variant(4, "diagonal", 5), 6864027),
    "fc": (_paper_variant(2, "full"), 6844945),
    "fc_mix": (_paper_variant(2, "full", 9), 6882467),
}


def _bn(channels, cfg):
    return nn.BatchNorm2d(channels, eps=cfg["bn_eps"], momentum=cfg["bn_momentum"])


def _conv_relu_stack(in_ch, out_ch, count, kernel):
    """count x (Conv + ReLU); the first conv maps in_ch -> out_ch."""
    layers = []
    for n in range(count):
        layers.append(nn.Conv2d(in_ch if n == 0 else out_ch, out_ch, kernel, padding=kernel // 2))
        layers.append(nn.ReLU())
    return layers


class DownConvBlock(nn.Module):
    """[AvgPool] -> 3 x (Conv3x3 + ReLU) -> [BatchNorm]. The reference U-Net always uses 3 convs."""

    def __init__(self, in_ch, out_ch, pool, norm, cfg):
        super().__init__()
        layers = [nn.AvgPool2d(2, 2, padding=0, ceil_mode=True)] if pool else []
        layers += _conv_relu_stack(in_ch, out_ch, 3, 3)
        if norm:
            layers.append(_bn(out_ch, cfg))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


class UpConvBlock(nn.Module):
    def __init__(self, in_ch, out_ch, norm, cfg):
        super().__init__()
        self.conv_block = DownConvBlock(in_ch, out_ch, pool=False, norm=norm, cfg=cfg)

    def forward(self, x, skip):
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
        return self.conv_block(torch.cat([up, skip], dim=1))


class Unet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        filters = cfg["num_filters"]
        self.contracting_path = nn.ModuleList()
        ch = cfg["image_channels"]
        for i, f in enumerate(filters):
            self.contracting_path.append(DownConvBlock(ch, f, pool=i > 0, norm=True, cfg=cfg))
            ch = f
        self.upsampling_path = nn.ModuleList()
        for i in range(len(filters) - 2, -1, -1):
            self.upsampling_path.append(UpConvBlock(ch + filters[i], filters[i], norm=i != 0, cfg=cfg))
            ch = filters[i]

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.contracting_path):
            x = block(x)
            if i < len(self.contracting_path) - 1:
                skips.append(x)
        for block in self.upsampling_path:
            x = block(x, skips.pop())
        return x


class Encoder(nn.Module):
    def __init__(self, in_ch, cfg):
        super().__init__()
        filters = cfg["num_filters"]
        layers = []
        for i, f in enumerate(filters):
            if i > 0:
                layers.append(nn.AvgPool2d(2, 2, padding=0, ceil_mode=True))
            layers += _conv_relu_stack(in_ch, f, cfg["convs_per_block"], 3)
            if i < len(filters) - 1:
                layers.append(_bn(f, cfg))
            in_ch = f
        self.layers = nn.Sequential(*layers)

    def forward(self, x):
        return self.layers(x)


def n_components(cfg):
    return cfg.get("n_components", 1)


class Latent:
    """The parameters of q(z|x,y) or p(z|x), with a component axis K (K = 1 without a mixture):
    mu, log_sigma [B,K,D]; for FC also cov_tril_raw (the cov_tril_op output) and scale_tril (L)
    [B,K,D,D]; for mixtures mixture_logits [B,K] (the raw mixture_weights_conv output)."""

    def __init__(self, mu, log_sigma, cov_tril_raw=None, scale_tril=None, mixture_logits=None):
        self.mu, self.log_sigma = mu, log_sigma
        self.cov_tril_raw, self.scale_tril = cov_tril_raw, scale_tril
        self.mixture_logits = mixture_logits

    @property
    def components(self):
        return self.mu.shape[-2]

    def outputs(self, prefix):
        """prefix_mu, prefix_log_sigma [, prefix_cov_tril_raw, prefix_scale_tril]
        [, prefix_mixture_logits]; without a mixture the K axis is dropped ([B,D], [B,D,D])."""
        out = {}
        for key in ("mu", "log_sigma", "cov_tril_raw", "scale_tril"):
            t = getattr(self, key)
            if t is not None:
                out[f"{prefix}_{key}"] = t[:, 0] if self.components == 1 else t
        if self.mixture_logits is not None:
            out[f"{prefix}_mixture_logits"] = self.mixture_logits
        return out


class _ConvGaussian(nn.Module):
    """The encoder shared by the AA and FC heads; forward() returns a Latent."""

    def __init__(self, cfg, posterior):
        super().__init__()
        self.latent_dim = cfg["latent_dim"]
        self.n_components = n_components(cfg)
        self.posterior = posterior
        in_ch = cfg["image_channels"] + (1 if posterior else 0)
        self.encoder = Encoder(in_ch, cfg)

    def _pooled(self, image, mask):
        x = torch.cat([image, mask], dim=1) if self.posterior else image
        return self.encoder(x).mean(dim=(2, 3), keepdim=True)

    def _mu_log_sigma(self, conv, h):
        k, d = self.n_components, self.latent_dim
        out = conv(h).flatten(1).view(h.shape[0], k, 2 * d)
        return out[:, :, :d], out[:, :, d:]

    def _logits(self, h):
        return self.mixture_weights_conv(h).flatten(1) if self.n_components > 1 else None


class AxisAlignedConvGaussian(_ConvGaussian):
    """p(z|x) (posterior=False) or q(z|x,y) (posterior=True): a diagonal Gaussian (K = 1) or a
    mixture of K diagonal Gaussians. Registration order = the reference's: encoder, conv_layer,
    mixture_weights_conv."""

    def __init__(self, cfg, posterior):
        super().__init__(cfg, posterior)
        k, d, c = self.n_components, self.latent_dim, cfg["num_filters"][-1]
        self.conv_layer = nn.Conv2d(c, 2 * k * d, 1)
        if k > 1:
            self.mixture_weights_conv = nn.Conv2d(c, k, 1)

    def forward(self, image, mask=None):
        h = self._pooled(image, mask)
        mu, log_sigma = self._mu_log_sigma(self.conv_layer, h)
        return Latent(mu, log_sigma, mixture_logits=self._logits(h))


class FullCovConvGaussian(_ConvGaussian):
    """A full-covariance Gaussian (K = 1) or a mixture of K of them. Registration order = the
    reference's: encoder, mean_log_sigma_op, cov_tril_op, mixture_weights_conv."""

    DIAGONAL_OFFSET = 1e-4  # added to exp(log sigma) on the diagonal of L

    def __init__(self, cfg, posterior):
        super().__init__(cfg, posterior)
        k, d, c = self.n_components, self.latent_dim, cfg["num_filters"][-1]
        self.mean_log_sigma_op = nn.Conv2d(c, 2 * k * d, 1)
        self.cov_tril_op = nn.Conv2d(c, k * d * d, 1)
        if k > 1:
            self.mixture_weights_conv = nn.Conv2d(c, k, 1)

    def forward(self, image, mask=None):
        h = self._pooled(image, mask)
        k, d = self.n_components, self.latent_dim
        mu, log_sigma = self._mu_log_sigma(self.mean_log_sigma_op, h)
        raw = self.cov_tril_op(h).flatten(1).view(h.shape[0], k, d, d)
        scale_tril = torch.tril(raw, diagonal=-1) + \
            torch.diag_embed(torch.exp(log_sigma) + self.DIAGONAL_OFFSET)
        return Latent(mu, log_sigma, raw, scale_tril, self._logits(h))


class Fcomb(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        f0, d = cfg["num_filters"][0], cfg["latent_dim"]
        layers = [nn.Conv2d(f0 + d, f0, 1), nn.ReLU()]
        for _ in range(cfg["fcomb_convs"] - 2):
            layers += [_bn(f0, cfg), nn.Conv2d(f0, f0, 1), nn.ReLU()]
        self.layers = nn.Sequential(*layers)
        self.last_layer = nn.Conv2d(f0, 1, 1)

    def forward(self, features, z):
        b, _, h, w = features.shape
        tiled = z[:, :, None, None].expand(b, z.shape[1], h, w)
        return self.last_layer(self.layers(torch.cat([features, tiled], dim=1)))


def independent_normal(mu, log_sigma):
    return torch.distributions.Independent(torch.distributions.Normal(mu, torch.exp(log_sigma)), 1)


def component_samples(lat, eps):
    """s_k = mu_k + sigma_k * eps_k (AA) or mu_k + L_k eps_k (FC). eps [..., B, K, D] -> same."""
    if lat.scale_tril is None:
        return lat.mu + torch.exp(lat.log_sigma) * eps
    return lat.mu + torch.matmul(lat.scale_tril, eps.unsqueeze(-1)).squeeze(-1)


def relaxed_one_hot(logits, gumbel, temperature):
    """The Gumbel-softmax (RelaxedOneHotCategorical) sample
    r = softmax((log_softmax(logits) + g) / tau) for given Gumbel(0, 1) noise g [..., B, K]."""
    return torch.softmax((torch.log_softmax(logits, dim=-1) + gumbel) / temperature, dim=-1)


def straight_through(r, frozen=None):
    """onehot(argmax r) - stop_gradient(r) + r: the one-hot in the forward pass, dr in the backward
    pass. frozen = (one_hot, r0), constants from an earlier evaluation, gives one_hot - r0 + r: the
    same value and gradient at that point, and a function whose true derivative IS the
    straight-through gradient (used to gradcheck it)."""
    if frozen is None:
        hard = F.one_hot(r.argmax(dim=-1), r.shape[-1]).to(r.dtype)
        return hard - r.detach() + r
    hard, r0 = frozen
    return hard - r0 + r


def rsample(lat, eps, gumbel=None, temperature=None, frozen=None):
    """A reparameterised sample for given noise: eps [..., B, K, D] and, for K > 1,
    gumbel [..., B, K]. Returns (z [..., B, D], r [..., B, K] or None, the component samples)."""
    s = component_samples(lat, eps)
    if lat.components == 1:
        return s[..., 0, :], None, s
    r = relaxed_one_hot(lat.mixture_logits, gumbel, temperature)
    w = straight_through(r, frozen)
    return (s * w.unsqueeze(-1)).sum(dim=-2), r, s


def component_log_prob(lat, z):
    """log N_k(z) for z [..., B, D] -> [..., B, K]."""
    diff = z.unsqueeze(-2) - lat.mu
    d = lat.mu.shape[-1]
    if lat.scale_tril is None:
        sigma = torch.exp(lat.log_sigma)
        return (-0.5 * (diff / sigma) ** 2 - lat.log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)
    y = torch.linalg.solve_triangular(lat.scale_tril, diff.unsqueeze(-1), upper=False).squeeze(-1)
    log_det = torch.log(torch.diagonal(lat.scale_tril, dim1=-2, dim2=-1)).sum(-1)
    return -0.5 * (y ** 2).sum(-1) - log_det - 0.5 * d * math.log(2 * math.pi)


def log_prob(lat, z):
    """log q(z) for z [..., B, D] -> [..., B];
    mixtures: logsumexp_k [log N_k(z) + log_softmax(logits)_k]."""
    comp = component_log_prob(lat, z)
    if lat.components == 1:
        return comp[..., 0]
    return torch.logsumexp(comp + torch.log_softmax(lat.mixture_logits, dim=-1), dim=-1)


def analytic_kl(q, p):
    """KL(q_b || p_b) [B] of two single Gaussians (K = 1)."""
    if q.scale_tril is None:
        return torch.distributions.kl_divergence(independent_normal(q.mu[:, 0], q.log_sigma[:, 0]),
                                                 independent_normal(p.mu[:, 0], p.log_sigma[:, 0]))
    lq, lp = q.scale_tril[:, 0], p.scale_tril[:, 0]
    d = lq.shape[-1]
    m = torch.linalg.solve_triangular(lp, lq, upper=False)
    y = torch.linalg.solve_triangular(lp, (q.mu - p.mu)[:, 0].unsqueeze(-1), upper=False)
    log_det = torch.log(torch.diagonal(lp, dim1=-2, dim2=-1)).sum(-1) - \
        torch.log(torch.diagonal(lq, dim1=-2, dim2=-1)).sum(-1)
    return log_det + 0.5 * ((m ** 2).sum((-2, -1)) + (y ** 2).sum((-2, -1)) - d)


def monte_carlo_kl(q, p, eps, gumbel, temperature, frozen=None):
    """(1/S) sum_s [log q(z_s) - log p(z_s)] [B], z_s = rsample(q, eps[s], gumbel[s]);
    eps [S,B,K,D], gumbel [S,B,K]. Also returns the samples and both log-densities [S,B]."""
    z, r, _ = rsample(q, eps, gumbel, temperature, frozen)
    log_q, log_p = log_prob(q, z), log_prob(p, z)
    return (log_q - log_p).mean(dim=0), dict(kl_z=z, kl_relaxed=r, kl_log_q=log_q, kl_log_p=log_p)


class GenProbUNet(nn.Module):
    """Any of the four variants, chosen by cfg["covariance"] and cfg["n_components"]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        head = FullCovConvGaussian if cfg.get("covariance", "diagonal") == "full" \
            else AxisAlignedConvGaussian
        assert cfg.get("covariance", "diagonal") in ("diagonal", "full")
        # Registration order = the reference's state_dict order.
        self.unet = Unet(cfg)
        self.prior = head(cfg, posterior=False)
        self.posterior = head(cfg, posterior=True)
        self.fcomb = Fcomb(cfg)

    def forward(self, image, mask, noise, frozen=None):
        return self.training_step(image, mask, noise, frozen)

    def training_step(self, image, mask, noise, frozen=None):
        """One training forward (model.train() for the BN statistics). Returns every quantity.

        noise: the posterior's draws, a tensor eps [B,D] (K = 1) or a dict with
          "eps"        [B,D] (K = 1) or [B,K,D]: the reconstruction sample's per-component N(0, 1)
          "gumbel"     [B,K]      (K > 1): its Gumbel(0, 1) noise
          "kl_eps"     [S,B,K,D]  (K > 1): the Monte Carlo KL samples' per-component N(0, 1)
          "kl_gumbel"  [S,B,K]    (K > 1): their Gumbel(0, 1) noise
        frozen (gradcheck only): {"rec": (one_hot, r0), "kl": (one_hot, r0)}, see straight_through.
        """
        cfg = self.cfg
        if torch.is_tensor(noise):
            noise = {"eps": noise}
        frozen = frozen or {}
        tau = cfg.get("temperature")
        q = self.posterior(image, mask)
        eps = noise["eps"] if q.components > 1 else noise["eps"].unsqueeze(-2)  # [B,K,D]
        z, r, s = rsample(q, eps, noise.get("gumbel"), tau, frozen.get("rec"))
        p = self.prior(image)
        features = self.unet(image)
        logits = self.fcomb(features, z)
        rec = F.binary_cross_entropy_with_logits(logits, mask, reduction="sum")
        extra = {}
        if q.components == 1:
            kl = analytic_kl(q, p)  # [B]
        else:
            kl, extra = monte_carlo_kl(q, p, noise["kl_eps"], noise["kl_gumbel"], tau,
                                       frozen.get("kl"))
            extra.update(z_components=s, z_relaxed=r, z_component=r.argmax(dim=-1))
        total = (rec + cfg["beta"] * kl.sum()) / image.shape[0]
        reg = sum(p.norm(2) for p in self.prior.parameters()) + \
            sum(p.norm(2) for p in self.posterior.parameters())
        reg = cfg.get("reg_weight", 0.0) * reg
        return dict(**q.outputs("posterior"), **p.outputs("prior"), z=z, unet_features=features,
                    logits=logits, rec=rec, kl=kl, total=total, reg=reg, loss=total + reg, **extra)

    def sample_logits(self, image, z_prior):
        """Inference (call in eval mode): prior parameters, log p(z_prior | x) and the logits for a
        given z."""
        p = self.prior(image)
        features = self.unet(image)
        return dict(**p.outputs("prior"), prior_log_prob=log_prob(p, z_prior),
                    unet_features=features, logits=self.fcomb(features, z_prior))


GenProbUNetAA = GenProbUNet  # the AA variant is GenProbUNet with the default covariance and K


def parameter_count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def state_dict_listing(model):
    """(name, shape, 'param' | 'buffer') for every state_dict entry, in order."""
    params = {n for n, _ in model.named_parameters()}
    return [(n, tuple(t.shape), "param" if n in params else "buffer")
            for n, t in model.state_dict().items()]


if __name__ == "__main__":
    variant = sys.argv[1] if len(sys.argv) > 1 else "aa"
    config, expected = PAPER_VARIANTS[variant]
    model = GenProbUNet(config)
    print("config:", json.dumps(config))
    for name, shape, kind in state_dict_listing(model):
        print(f"{name}\t{'x'.join(map(str, shape)) or 'scalar'}\t{kind}")
    n = parameter_count(model)
    print("trainable parameters:", n)
    assert n == expected, (n, expected)
