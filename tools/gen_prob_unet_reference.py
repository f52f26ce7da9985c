#!/usr/bin/python3
"""The Generalized Probabilistic U-Net (Bhat et al. 2022), axis-aligned ("AA") variant, in PyTorch.

Our own re-implementation of the semantics of the reference code
(github.com/ishaanb92/GeneralizedProbabilisticUNet, src/probabilistic_unet/{model,unet,unet_blocks,
utils}.py, trained by scripts/train.py). It is the model the Christensen et al. baselines call the
Probabilistic U-Net "AA". Module and parameter names are the reference's state_dict names, so a
reference checkpoint loads into it unchanged and ambiseg's C++ model can use the same names:

    unet.contracting_path.{i}.layers.{k}.*          U-Net down blocks
    unet.upsampling_path.{j}.conv_block.layers.{k}.* U-Net up blocks (j = 0 is the deepest)
    prior.encoder.layers.{k}.*, prior.conv_layer.*   p(z | x)
    posterior.encoder.layers.{k}.*, posterior.conv_layer.*   q(z | x, y)
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
* Heads: mean over H and W of the encoder output -> conv_layer (1x1, F[-1] -> 2D);
  channels [0, D) are mu, [D, 2D) are log sigma; sigma = exp(log sigma).
* z = mu_q + exp(log sigma_q) * eps (Independent(Normal).rsample()).
* Fcomb: cat([features, z broadcast over H x W]) (features first) -> Conv1x1(F[0]+D -> F[0]), ReLU,
  then (fcomb_convs - 2) x [BatchNorm2d, Conv1x1, ReLU], then last_layer Conv1x1(F[0] -> 1).
* Loss (train.py with one annotation, analytic KL, gamma = 0):
    rec   = sum over b, h, w of BCEWithLogits(logits, mask)
    kl_b  = KL(q_b || p_b), analytic, summed over the D latent dimensions
    total = (rec + beta * sum_b kl_b) / B                   (= -elbo)
    reg   = reg_weight * sum over parameters theta of prior and posterior of ||theta||_2
            (the unsquared Frobenius norm of each tensor: conv weights, biases, BN gamma and beta)
    loss  = total + reg
  (The reference also uses Adam with weight_decay 1e-5; that is the optimiser, not this loss.)
* BatchNorm: eps 1e-5, momentum 0.1; training mode uses the batch statistics (biased variance) and
  updates running_mean/var with the unbiased variance; eval mode uses the running statistics.

Only the AA head with one component is implemented here (AA mix / FC / FC mix differ in the heads
and the KL; see /tmp/notes/models_research.md section 2).

Run: /usr/bin/python3 tools/gen_prob_unet_reference.py
(prints the state_dict of the paper configuration and checks its parameter count, 6,847,129.)
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

# The paper's AA configuration (Table 1: 6,847,129 trainable parameters).
PAPER_CONFIG = dict(num_filters=[32, 64, 128, 256], convs_per_block=3, latent_dim=6,
                    fcomb_convs=4, beta=10.0, image_channels=1, bn_eps=1e-5, bn_momentum=0.1,
                    reg_weight=1e-5)
PAPER_PARAMETER_COUNT = 6847129


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


class AxisAlignedConvGaussian(nn.Module):
    """p(z|x) (posterior=False) or q(z|x,y) (posterior=True): a diagonal Gaussian."""

    def __init__(self, cfg, posterior):
        super().__init__()
        self.latent_dim = cfg["latent_dim"]
        self.posterior = posterior
        in_ch = cfg["image_channels"] + (1 if posterior else 0)
        self.encoder = Encoder(in_ch, cfg)
        self.conv_layer = nn.Conv2d(cfg["num_filters"][-1], 2 * self.latent_dim, 1)

    def forward(self, image, mask=None):
        x = torch.cat([image, mask], dim=1) if self.posterior else image
        h = self.encoder(x).mean(dim=(2, 3), keepdim=True)
        out = self.conv_layer(h).flatten(1)
        return out[:, :self.latent_dim], out[:, self.latent_dim:]  # mu, log sigma


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


class GenProbUNetAA(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        # Registration order = the reference's state_dict order.
        self.unet = Unet(cfg)
        self.prior = AxisAlignedConvGaussian(cfg, posterior=False)
        self.posterior = AxisAlignedConvGaussian(cfg, posterior=True)
        self.fcomb = Fcomb(cfg)

    def forward(self, image, mask, eps):
        return self.training_step(image, mask, eps)

    def training_step(self, image, mask, eps):
        """One training forward (model.train() for the BN statistics). Returns every quantity."""
        cfg = self.cfg
        mu_q, ls_q = self.posterior(image, mask)
        z = mu_q + torch.exp(ls_q) * eps
        mu_p, ls_p = self.prior(image)
        features = self.unet(image)
        logits = self.fcomb(features, z)
        rec = F.binary_cross_entropy_with_logits(logits, mask, reduction="sum")
        kl = torch.distributions.kl_divergence(independent_normal(mu_q, ls_q),
                                               independent_normal(mu_p, ls_p))  # [B]
        total = (rec + cfg["beta"] * kl.sum()) / image.shape[0]
        reg = sum(p.norm(2) for p in self.prior.parameters()) + \
            sum(p.norm(2) for p in self.posterior.parameters())
        reg = cfg["reg_weight"] * reg
        return dict(posterior_mu=mu_q, posterior_log_sigma=ls_q, prior_mu=mu_p,
                    prior_log_sigma=ls_p, z=z, unet_features=features, logits=logits, rec=rec,
                    kl=kl, total=total, reg=reg, loss=total + reg)

    def sample_logits(self, image, z_prior):
        """Inference (call in eval mode): prior parameters and the logits for a given z."""
        mu_p, ls_p = self.prior(image)
        features = self.unet(image)
        return dict(prior_mu=mu_p, prior_log_sigma=ls_p, unet_features=features,
                    logits=self.fcomb(features, z_prior))


def parameter_count(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def state_dict_listing(model):
    """(name, shape, 'param' | 'buffer') for every state_dict entry, in order."""
    params = {n for n, _ in model.named_parameters()}
    return [(n, tuple(t.shape), "param" if n in params else "buffer")
            for n, t in model.state_dict().items()]


if __name__ == "__main__":
    model = GenProbUNetAA(PAPER_CONFIG)
    print("config:", json.dumps(PAPER_CONFIG))
    for name, shape, kind in state_dict_listing(model):
        print(f"{name}\t{'x'.join(map(str, shape)) or 'scalar'}\t{kind}")
    n = parameter_count(model)
    print("trainable parameters:", n)
    assert n == PAPER_PARAMETER_COUNT, (n, PAPER_PARAMETER_COUNT)
