#!/usr/bin/python3
"""PHiSeg (Baumgartner et al., MICCAI 2019) in PyTorch: a variable-for-variable port of the
semantics of the authors' TensorFlow 1.12 code (github.com/baumgach/PHiSeg-code @c43f3b3,
experiment phiseg/experiments/phiseg_7_5.py with n0 = 20, as Christensen et al. 2025 used:
7,322,210 trainable parameters). Files of the reference: phiseg/phiseg_model.py,
phiseg/model_zoo/{posteriors,priors,likelihoods}.py (function `phiseg`),
tfwrapper/{layers,normalisation,utils}.py.

Shape legend: B batch, H x W image, C_in image channels, K n_classes (2), D zdim0 (2),
L latent levels (5), R resolution levels (7), dl = R - L (2), n0 base width (20),
c[i] = [n0, 2n0, 4n0, 6n0, 6n0, 6n0, 6n0][i] (paper: 20, 40, 80, 120, 120, 120, 120; TF's list
ends at R = 7, channels() continues it with 6n0), zu = D * n0 (the width of the z-upsampling
convs; paper 40).
Level l in 0..L-1 (0 = finest). Latent level l lives at resolution level l + dl:
h_l x w_l = H / 2^(l+dl) x W / 2^(l+dl). H and W must be divisible by 2^(R-1).
All tensors are NCHW; conv weights are stored PyTorch-style OIHW [out, in, kh, kw] (TF stores
HWIO [kh, kw, in, out]: W_torch = W_tf.transpose(3, 2, 0, 1); TF's conv2d is a
cross-correlation like PyTorch's).

Building blocks (tfwrapper/layers.py, normalisation.py):
* convBN(in -> out): Conv3x3, stride 1, SAME (= zero padding 1), NO bias -> BatchNorm -> ReLU
  (layers.conv2D drops the bias when normalisation is batch_norm, l.126-128; order
  activation(normalisation(conv)), l.134-135). A "stack" of n convBN maps in -> out with its
  first conv and out -> out with the others.
* head: Conv (with bias), no BN; activation identity (mu, logits) or softplus (sigma):
  softplus(x) = max(x, 0) + log1p(exp(-|x|)).
* pool: 2x2 average pool, stride 2 (SAME; exact halving since the sizes are even).
* up2: TF1 tf.image.resize_images BILINEAR x2 with align_corners=False and the legacy (not
  half-pixel) coordinates, per axis with input length n:
      out[2k] = in[k], out[2k+1] = (in[k] + in[k+1]) / 2 for k < n-1, out[2n-1] = in[n-1];
  applied along H, then along W (bilinear = the product of the two 1-D interpolations). It is
  neither PyTorch align_corners=True nor align_corners=False.
* nn_up(f): TF1 NEAREST_NEIGHBOR resize by the integer factor f: out[i] = in[floor(i / f)].
* BatchNorm (tf.contrib.layers.batch_norm: decay 0.99, epsilon 1e-3, center and scale):
  y = gamma (x - mean) / sqrt(var + 1e-3) + beta. Training: mean and var are the batch statistics
  over (B, h, w) with the BIASED variance (1/N); the running statistics are updated with the
  UNBIASED (Bessel, N/(N-1)) batch variance:
      running_mean <- 0.99 running_mean + 0.01 mean
      running_var  <- 0.99 running_var  + 0.01 var * N / (N - 1),    N = B h w.
  Evaluation uses the running statistics. Initial running_mean 0, running_var 1.
  Why Bessel: in TF 1.12 tf.contrib.layers.batch_norm with the default updates_collections,
  no batch_weights and no zero-debias delegates to the core layer
  tf.layers.BatchNormalization(fused=None), which chooses the fused kernel for 4-D input. Its
  _fused_batch_norm (tensorflow/python/keras/layers/normalization.py) removes nothing, because
  _bessels_correction_test_only = True, and feeds the variance returned by nn.fused_batch_norm to
  the moving average; the kernel returns it Bessel-corrected (core/kernels/
  fused_batch_norm_op.cc: "This adjustment is for Bessel's correction",
  batch_var = variance * rest_size / (rest_size - 1); cuDNN's running variance likewise). See also
  tensorflow/tensorflow issue #55545 (fused uses Bessel, non-fused does not). This is
  PyTorch's BatchNorm2d convention, with momentum 0.01 = 1 - decay.

Posterior q(z | x, y) and prior p(z | x) (posteriors.py:56-132, priors.py:51-128): one class,
LatentNet. Input: posterior cat([x, one_hot(y, K) - 0.5]) (C_in + K channels, one-hot channel k
is [y == k], so the mask channels are +-0.5); prior x.
  pre_z[i], i = 0..R-1: [pool if i > 0] then stack of 3 convBN (-> c[i]) at H/2^i.
  Top level l = L-1 on f = pre_z[L-1+dl]:
      mu_{L-1} = Conv3x3(f -> D, bias)   (the default kernel: a 3x3 conv, not 1x1)
      sigma_{L-1} = softplus(Conv1x1(f -> D, bias))
  Level l = L-2..0:
      u = z_ups[l+1][l+1](up2(zc_{l+1}))          stack of 2 convBN: D -> zu -> zu, at h_l x w_l
      g = z_input[l](cat([pre_z[l+dl], u]))        stack of 2 convBN: c[l+dl] + zu -> c[l] -> c[l]
      mu_l = Conv1x1(g -> D, bias), sigma_l = softplus(Conv1x1(g -> D, bias))
  z_l = mu_l + sigma_l * eps_l, eps_l ~ N(0, 1) of shape [B, D, h_l, w_l].
  zc_{l+1}, the sample the level below is conditioned on: the posterior's own z_{l+1}; in the
  prior the POSTERIOR's sample during training (generation_mode=False, priors.py:122-126) and the
  prior's own sample in generation mode.
  Dead branches: the TF loop `for j in reversed(range(0, i+1))` (posteriors.py:112-118,
  priors.py:104-110) also builds, for j < i, a chain that upsamples z_{i+1} further:
      z_ups[a][b] for b = a-1..1 (a = i+1): up2 of the previous step's output, then
      stack of 2 convBN zu -> zu -> zu.
  Their output is never used. Per net there are (L-1)(L-2)/2 such pairs (paper: 6 pairs, 173,760
  parameters per net, 347,520 in all); they are part of the paper's 7,322,210. They get zero
  gradient. They are still EXECUTED in TF's training step, because their BatchNorm update ops are
  in tf.GraphKeys.UPDATE_OPS, on which the train op depends (phiseg_model.py:135-141), so their
  running statistics move; config bn_update_dead_branches reproduces that (it affects nothing but
  those running statistics).

Likelihood p(y | z) (likelihoods.py:162-223): a decoder of z only (it never sees x).
  post_z[l] = preups[l](post_z_stack[l](z_l)):
      post_z_stack[l]: stack of 2 convBN D -> c[l] -> c[l] at h_l x w_l;
      preups[l]: dl x (up2 then convBN c[l] -> c[l]) ("increase_resolution"), ending at
      H/2^l x W/2^l.
  post_c[L-1] = post_z[L-1]; for l = L-2..0:
      ub = ups_c[l](up2(post_c[l+1]))             one convBN: ch(post_c[l+1]) -> c[l]
      post_c[l] = post_c_stack[l](cat([post_z[l], ub]))
                                      stack of 2 convBN 2c[l] -> c[l+dl] -> c[l+dl]
  ch(post_c[l]) = c[l+dl] for l < L-1, c[L-1] for l = L-1 (paper: 80, 120, 120, 120, 120).
  s_l = nn_up(2^l)(Conv1x1(post_c[l] -> K, bias)): level l's logits at H x W.
  logits = sum_l s_l, accumulated top-down as S_l below (logits = S_0); the prediction is
  softmax / argmax over the K channels.

Loss (phiseg_model.py:210-287; phiseg_7_5.py: residual_multinoulli_loss_weight 1,
KL_divergence_loss_weight 1, exponential_weighting True, no weight decay):
  S_{L-1} = s_{L-1}, S_l = S_{l+1} + s_l (the residual partial sums, full resolution)
  CE_l = (1/B) sum_b sum_{h,w} [logsumexp_k S_l[b,k,h,w] - S_l[b, y[b,h,w], h, w]]
  KL_l = (1/B) sum_b 0.5 sum_{d,h,w} [ (sq^2 + (mp - mq)^2) / (sp^2 + 1e-10)
                                       + log(sp^2 + 1e-10) - log(sq^2 + 1e-10) - 1 ]
         with q = (mq, sq) the posterior's (mu_l, sigma_l) and p = (mp, sp) the prior's, the prior
         conditioned on the posterior's samples (training mode).
  total = sum_l CE_l + sum_l 4^l KL_l.

Training step (TF semantics, model.train()): posterior (own samples from eps) -> prior
conditioned on the posterior's samples -> likelihood of the posterior's samples -> total.
BatchNorm running statistics: TF's train op also runs the update ops of the graph's
generation-mode branches, which are built with the same `training` placeholder
(phiseg_model.py:61-73 prior with generation_mode=True and scope reuse, :89-98 likelihood of
those samples): every prior and likelihood BatchNorm gets a SECOND update per step from the batch
statistics of the generation pass (the prior conditioned on its own samples, drawn with fresh
noise gen_eps_l, and the likelihood of those samples, both with training-mode BN). Their outputs
do not enter the loss. TF gives the two update ops of one variable no order (they are independent
ops under one control dependency, on a non-resource variable); here they are applied one after
the other, training pass first, generation pass second (any other order or a simultaneous
application differs by a term of order 0.01^2 times the difference of the two statistics).
Config bn_update_generation_pass (default True) reproduces this. The posterior is built once,
so it gets one update.
Evaluation / sampling (model.eval()): the prior in generation mode (each level conditioned on the
prior's own sample of the level above, from given eps_l) with running-statistics BN, then the
likelihood of those samples; logits = sum_l s_l.

Parameter names (state_dict order = this table's order: posterior, prior, likelihood; within a
net by role, within a role by level ascending). <net> is posterior or prior; a "stack" S has
S.conv.<k>.weight [out, in, 3, 3] and S.bn.<k>.{weight, bias, running_mean, running_var} [out]
(weight = gamma, bias = beta; TF moving_mean, moving_variance), k = 0..n-1 ~ TF suffix _{k+1}.
  name                                 TF variable (scope prefix <net>/ or likelihood/)
  <net>.pre_z.<i>.conv.<k>.weight      z{i}_pre_{k+1}/W                        i < R, k < 3
  <net>.pre_z.<i>.bn.<k>.*             z{i}_pre_{k+1}/batch_norm/BatchNorm/{gamma,beta,moving_*}
  <net>.z_ups.<a>.<b>.{conv,bn}.<k>    z{a}_ups_to_{b}_c_{k+1}/...             1 <= b <= a < L
        (the step of z_a's upsampling chain that outputs at latent level b-1's resolution;
        input up2(z_a) when b == a (live, feeds z_input.<a-1>), else up2(z_ups.<a>.<b+1>'s
        output) (dead: allocated only with dead_branches); keys: a ascending, b descending)
  <net>.z_input.<l>.{conv,bn}.<k>      z{l}_input_{k+1}/...                    l < L-1, k < 2
  <net>.mu.<l>.{weight,bias}           z{l}_mu/{W,b}            [D, in, 3, 3] for l = L-1, else 1x1
  <net>.sigma.<l>.{weight,bias}        z{l}_sigma/{W,b}         [D, in, 1, 1]
  likelihood.post_z.<l>.{conv,bn}.<k>  z{l}_post_{k+1}/...                     l < L, k < 2
  likelihood.preups.<l>.{conv,bn}.<m>  preups_{l}/z{m}_post/...                l < L, m < dl
  likelihood.ups_c.<l>.{conv,bn}.0     post_z{l+1}_ups_c/...                   l < L-1
  likelihood.post_c.<l>.{conv,bn}.<k>  post_c_{l}_{k+1}/...                    l < L-1, k < 2
  likelihood.s.<l>.{weight,bias}       y_lvl{l}/{W,b}           [K, ch(post_c[l]), 1, 1]
(In TF the BatchNorm variables sit under <layer>/batch_norm/BatchNorm/.) Initialisation as TF
(reset_parameters_tf): conv weights truncated normal (+-2 sd, redrawn) with
sd = sqrt(1.3 * 2 / fan_in), fan_in = in * kh * kw (contrib variance_scaling_initializer,
factor 2, FAN_IN, uniform=False); biases 0; gamma 1, beta 0.

Config keys: n0, zdim0, latent_levels, resolution_levels, image_channels, n_classes, bn_eps,
bn_momentum (PyTorch convention, 1 - TF decay), dead_branches (allocate the dead z_ups pairs),
bn_update_dead_branches (run them in training for their running statistics; default
dead_branches), bn_update_generation_pass (default True).

Run: /usr/bin/python3 tools/phiseg_reference.py
(prints the state_dict of the paper configuration and checks 7,322,210 trainable parameters.)
"""
import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

PAPER_CONFIG = dict(n0=20, zdim0=2, latent_levels=5, resolution_levels=7, image_channels=1,
                    n_classes=2, bn_eps=1e-3, bn_momentum=0.01, dead_branches=True,
                    bn_update_dead_branches=True, bn_update_generation_pass=True)
PAPER_PARAMETER_COUNT = 7322210
PAPER_PARAMETER_COUNT_WITHOUT_DEAD = 6974690


def channels(cfg):
    """c[i] for i < R: [n0, 2n0, 4n0, 6n0, 6n0, ...]."""
    n0 = cfg["n0"]
    return [[n0, 2 * n0, 4 * n0][i] if i < 3 else 6 * n0 for i in range(cfg["resolution_levels"])]


def up2(x):
    """TF1 legacy bilinear x2 (align_corners=False, half_pixel_centers=False), NCHW."""
    for dim in (2, 3):
        n = x.shape[dim]
        nxt = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim=dim)
        mid = (x + nxt) / 2
        x = torch.stack([x, mid], dim=dim + 1).flatten(dim, dim + 1)
    return x


def nn_up(x, factor):
    """TF1 nearest-neighbour resize by an integer factor: out[i] = in[floor(i / factor)]."""
    if factor == 1:
        return x
    return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def softplus(x):
    return torch.relu(x) + torch.log1p(torch.exp(-x.abs()))


class BatchNorm(nn.Module):
    """TF batch_norm (fused): the four TF variables, no num_batches_tracked."""

    def __init__(self, ch, cfg):
        super().__init__()
        self.eps, self.momentum = cfg["bn_eps"], cfg["bn_momentum"]
        self.weight = nn.Parameter(torch.ones(ch))
        self.bias = nn.Parameter(torch.zeros(ch))
        self.register_buffer("running_mean", torch.zeros(ch))
        self.register_buffer("running_var", torch.ones(ch))

    def forward(self, x):
        # F.batch_norm in training normalises with the biased variance and updates running_var
        # with the unbiased one, as TF's fused kernel does.
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, self.momentum, self.eps)


class ConvBNStack(nn.Module):
    """n x convBN (Conv3x3 no bias -> BN -> ReLU); with upsample, each conv is preceded by up2
    (the likelihood's increase_resolution and ups_c)."""

    def __init__(self, in_ch, out_ch, n, cfg):
        super().__init__()
        self.conv = nn.ModuleList(
            [nn.Conv2d(in_ch if k == 0 else out_ch, out_ch, 3, padding=1, bias=False)
             for k in range(n)])
        self.bn = nn.ModuleList([BatchNorm(out_ch, cfg) for _ in range(n)])

    def forward(self, x, upsample=False):
        for conv, bn in zip(self.conv, self.bn):
            if upsample:
                x = up2(x)
            x = torch.relu(bn(conv(x)))
        return x


class LatentNet(nn.Module):
    """The posterior (in_ch = C_in + K) or the prior (in_ch = C_in)."""

    def __init__(self, cfg, in_ch):
        super().__init__()
        self.cfg = cfg
        c, R, L, D = channels(cfg), cfg["resolution_levels"], cfg["latent_levels"], cfg["zdim0"]
        dl, zu = R - L, cfg["zdim0"] * cfg["n0"]
        assert 1 <= L <= R
        self.pre_z = nn.ModuleList(
            [ConvBNStack(in_ch if i == 0 else c[i - 1], c[i], 3, cfg) for i in range(R)])
        self.z_ups = nn.ModuleDict()
        for a in range(1, L):
            steps = nn.ModuleDict()
            for b in range(a, 0, -1):
                if b == a or cfg["dead_branches"]:
                    steps[str(b)] = ConvBNStack(D if b == a else zu, zu, 2, cfg)
            self.z_ups[str(a)] = steps
        self.z_input = nn.ModuleList(
            [ConvBNStack(c[l + dl] + zu, c[l], 2, cfg) for l in range(L - 1)])
        self.mu = nn.ModuleList(
            [nn.Conv2d(c[R - 1], D, 3, padding=1) if l == L - 1 else nn.Conv2d(c[l], D, 1)
             for l in range(L)])
        self.sigma = nn.ModuleList(
            [nn.Conv2d(c[R - 1] if l == L - 1 else c[l], D, 1) for l in range(L)])

    def forward(self, x, eps=None, cond=None):
        """x: the net's input. eps: list of L noise tensors [B, D, h_l, w_l] (or None: no
        samples). cond: list of L samples to condition on (the prior in training), else each
        level is conditioned on this net's own sample of the level above.
        Returns dict(mu, sigma, z): lists over levels (z entries None without eps)."""
        cfg = self.cfg
        R, L = cfg["resolution_levels"], cfg["latent_levels"]
        dl = R - L
        pre = []
        for i, stack in enumerate(self.pre_z):
            pre.append(stack(x if i == 0 else F.avg_pool2d(pre[-1], 2, 2)))
        mu, sigma, z = [None] * L, [None] * L, [None] * L
        dead = self.training and cfg["dead_branches"] and \
            cfg.get("bn_update_dead_branches", cfg["dead_branches"])
        for l in reversed(range(L)):
            if l == L - 1:
                g = pre[l + dl]
            else:
                src = cond[l + 1] if cond is not None else z[l + 1]
                steps = self.z_ups[str(l + 1)]
                u = steps[str(l + 1)](up2(src))
                if dead:
                    with torch.no_grad():  # only for the BN running statistics
                        v = u
                        for b in range(l, 0, -1):
                            v = steps[str(b)](up2(v))
                g = self.z_input[l](torch.cat([pre[l + dl], u], dim=1))
            mu[l] = self.mu[l](g)
            sigma[l] = softplus(self.sigma[l](g))
            if eps is not None:
                z[l] = mu[l] + sigma[l] * eps[l]
        return dict(mu=mu, sigma=sigma, z=z)


class Likelihood(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c, R, L, D = channels(cfg), cfg["resolution_levels"], cfg["latent_levels"], cfg["zdim0"]
        dl, K = R - L, cfg["n_classes"]
        pc = [c[l + dl] if l < L - 1 else c[L - 1] for l in range(L)]  # channels of post_c[l]
        self.post_z = nn.ModuleList([ConvBNStack(D, c[l], 2, cfg) for l in range(L)])
        self.preups = nn.ModuleList([ConvBNStack(c[l], c[l], dl, cfg) for l in range(L)])
        self.ups_c = nn.ModuleList([ConvBNStack(pc[l + 1], c[l], 1, cfg) for l in range(L - 1)])
        self.post_c = nn.ModuleList(
            [ConvBNStack(2 * c[l], c[l + dl], 2, cfg) for l in range(L - 1)])
        self.s = nn.ModuleList([nn.Conv2d(pc[l], K, 1) for l in range(L)])

    def forward(self, z):
        """z: list of L samples -> list of L level logits s_l [B, K, H, W]."""
        L = self.cfg["latent_levels"]
        post_z = [self.preups[l](self.post_z[l](z[l]), upsample=True) for l in range(L)]
        post_c = [None] * L
        post_c[L - 1] = post_z[L - 1]
        for l in reversed(range(L - 1)):
            ub = self.ups_c[l](up2(post_c[l + 1]), upsample=False)
            post_c[l] = self.post_c[l](torch.cat([post_z[l], ub], dim=1))
        return [nn_up(self.s[l](post_c[l]), 2 ** l) for l in range(L)]


def kl_two_gauss(mu_q, sigma_q, mu_p, sigma_p):
    """The TF KL_two_gauss_with_diag_cov: per-case sum over (d, h, w), mean over the batch."""
    sq, sp = sigma_q ** 2, sigma_p ** 2
    t = (sq + (mu_p - mu_q) ** 2) / (sp + 1e-10) + torch.log(sp + 1e-10) - \
        torch.log(sq + 1e-10) - 1
    return (0.5 * t.flatten(1).sum(1)).mean()


def multinoulli_ce(onehot, logits):
    """softmax cross entropy summed over pixels, mean over the batch."""
    ce = torch.logsumexp(logits, dim=1) - (onehot * logits).sum(1)
    return ce.flatten(1).sum(1).mean()


class PHiSeg(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        R = cfg["resolution_levels"]
        self.posterior = LatentNet(self.cfg, cfg["image_channels"] + cfg["n_classes"])
        self.prior = LatentNet(self.cfg, cfg["image_channels"])
        self.likelihood = Likelihood(self.cfg)
        self.size_multiple = 2 ** (R - 1)

    def latent_shapes(self, batch, height, width):
        """[B, D, h_l, w_l] for l = 0..L-1."""
        cfg = self.cfg
        dl = cfg["resolution_levels"] - cfg["latent_levels"]
        return [(batch, cfg["zdim0"], height >> (l + dl), width >> (l + dl))
                for l in range(cfg["latent_levels"])]

    def onehot(self, mask):
        """mask [B, 1, H, W] of class indices -> one_hot [B, K, H, W]."""
        oh = F.one_hot(mask[:, 0].round().long(), self.cfg["n_classes"])
        return oh.permute(0, 3, 1, 2).to(mask.dtype)

    def forward(self, image, mask, eps, gen_eps=None):
        return self.training_step(image, mask, eps, gen_eps)

    def training_step(self, image, mask, eps, gen_eps=None):
        """One training forward (call in train mode). eps: the posterior's noise, L tensors
        [B, D, h_l, w_l]; gen_eps: the generation pass's noise (same shapes; needed when
        bn_update_generation_pass and training). Returns every quantity."""
        cfg = self.cfg
        L = cfg["latent_levels"]
        assert image.shape[2] % self.size_multiple == 0 and image.shape[3] % self.size_multiple == 0
        onehot = self.onehot(mask)
        q = self.posterior(torch.cat([image, onehot - 0.5], dim=1), eps=eps)
        p = self.prior(image, cond=q["z"])
        s = self.likelihood(q["z"])
        partial = [None] * L
        for l in reversed(range(L)):
            partial[l] = s[l] if l == L - 1 else partial[l + 1] + s[l]
        ce = [multinoulli_ce(onehot, partial[l]) for l in range(L)]
        kl = [kl_two_gauss(q["mu"][l], q["sigma"][l], p["mu"][l], p["sigma"][l])
              for l in range(L)]
        total = sum(ce) + sum(4 ** l * kl[l] for l in range(L))
        out = dict(posterior_mu=q["mu"], posterior_sigma=q["sigma"], z=q["z"], prior_mu=p["mu"],
                   prior_sigma=p["sigma"], level_logits=s, partial_logits=partial,
                   logits=partial[0], ce=ce, kl=kl, total=total)
        if self.training and cfg.get("bn_update_generation_pass", True):
            assert gen_eps is not None, "the generation pass needs its noise"
            with torch.no_grad():  # only for the BN running statistics of prior and likelihood
                g = self.prior(image, eps=gen_eps)
                self.likelihood(g["z"])
            out["gen_z"] = g["z"]
        return out

    def sample(self, image, eps):
        """Generation mode (call in eval mode): prior samples from eps, their logits."""
        p = self.prior(image, eps=eps)
        s = self.likelihood(p["z"])
        logits = s[-1]
        for l in reversed(range(len(s) - 1)):
            logits = logits + s[l]
        return dict(prior_mu=p["mu"], prior_sigma=p["sigma"], z=p["z"], level_logits=s,
                    logits=logits)

    def reset_parameters_tf(self, generator=None):
        """The TF initialisation (see the module docstring)."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.weight[0].numel()
                    sd = math.sqrt(1.3 * 2.0 / fan_in)
                    w = torch.empty_like(m.weight)
                    nn.init.trunc_normal_(w, 0.0, sd, -2 * sd, 2 * sd)
                    m.weight.copy_(w)
                    if m.bias is not None:
                        m.bias.zero_()
                elif isinstance(m, BatchNorm):
                    m.weight.fill_(1.0)
                    m.bias.zero_()
                    m.running_mean.zero_()
                    m.running_var.fill_(1.0)


def is_dead(name):
    """True for the parameters and buffers of the dead z_ups pairs (z_ups.<a>.<b>, b < a)."""
    parts = name.split(".")
    if len(parts) > 3 and parts[1] == "z_ups":
        return int(parts[3]) < int(parts[2])
    return False


def parameter_count(model, dead=True):
    return sum(p.numel() for n, p in model.named_parameters()
               if p.requires_grad and (dead or not is_dead(n)))


def state_dict_listing(model):
    """(name, shape, 'param' | 'buffer') for every state_dict entry, in order."""
    params = {n for n, _ in model.named_parameters()}
    return [(n, tuple(t.shape), "param" if n in params else "buffer")
            for n, t in model.state_dict().items()]


if __name__ == "__main__":
    model = PHiSeg(PAPER_CONFIG)
    print("config:", json.dumps(PAPER_CONFIG))
    for name, shape, kind in state_dict_listing(model):
        print(f"{name}\t{'x'.join(map(str, shape)) or 'scalar'}\t{kind}")
    n, n_live = parameter_count(model), parameter_count(model, dead=False)
    print("trainable parameters:", n, "without the dead branches:", n_live)
    assert n == PAPER_PARAMETER_COUNT, n
    assert n_live == PAPER_PARAMETER_COUNT_WITHOUT_DEAD, n_live
