#!/usr/bin/python3
"""The reference diffusion UNet of the paper, re-implemented in PyTorch (SPEC.md section 6).

A faithful re-implementation of the authors' guided-diffusion style UNet: module names
follow their state_dict keys exactly (/work/shared/reference/unet_state_dict_keys.txt), so
`ReferenceUNet().state_dict()` lists the same names and shapes in the same order and a
checkpoint of the reference loads into it unchanged. ambiseg's C++ UNet (include/ambiseg/
nn/) is tested against this model (tools/make_unet_fixture.py) and benchmarked against it
(benchmarks/peer/torch_unet_bench.py).

Run with Debian's torch 1.13: /usr/bin/python3 tools/reference_unet.py
(prints the parameter count and compares the keys with the reference list).
"""
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# The defaults of the reference (6,891,905 parameters).
DEFAULT_CONFIG = dict(
    model_channels=32,
    channel_mult=(1, 1, 2, 4),
    num_res_blocks=(1, 2, 3, 4),
    num_middle_res_blocks=4,
    attention_levels=(3,),
    num_heads=4,
    in_channels=4,
    out_channels=1,
    final_tanh=True,
    max_period=10.0,
)


def groups_for(channels):
    """GroupNorm groups: 32 when the channel count allows it, one channel per group otherwise."""
    return 32 if channels % 32 == 0 else channels


def normalization(channels):
    return nn.GroupNorm(groups_for(channels), channels, eps=1e-5)


def zero_module(module):
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(t, dim, max_period=10.0):
    """Raw t in [0,1] -> [cos(t*f), sin(t*f)], f_k = exp(-ln(max_period) k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float64) / half)
    args = t[:, None].double() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb.to(t.dtype if t.is_floating_point() else torch.float32)


class TimestepBlock(nn.Module):
    pass


class TimestepEmbedSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Downsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResBlock(TimestepBlock):
    def __init__(self, channels, emb_channels, out_channels):
        super().__init__()
        self.in_layers = nn.Sequential(
            normalization(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            normalization(out_channels), nn.SiLU(), nn.Dropout(p=0.0),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[..., None, None]
        h = self.out_layers(h)
        return self.skip_connection(x) + h


class QKVAttentionLegacy(nn.Module):
    """Heads split by reshaping qkv [B,3C,T] to [B*heads, 3*ch, T], then q|k|v."""

    def __init__(self, n_heads):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv):
        bs, width, length = qkv.shape
        ch = width // (3 * self.n_heads)
        q, k, v = qkv.reshape(bs * self.n_heads, ch * 3, length).split(ch, dim=1)
        scale = 1 / math.sqrt(math.sqrt(ch))
        weight = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        a = torch.einsum("bts,bcs->bct", weight, v)
        return a.reshape(bs, -1, length)


class AttentionBlock(nn.Module):
    def __init__(self, channels, num_heads):
        super().__init__()
        assert channels % num_heads == 0
        self.norm = normalization(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.attention = QKVAttentionLegacy(num_heads)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x):
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        h = self.proj_out(self.attention(qkv))
        return (x + h).reshape(b, c, *spatial)


class ReferenceUNet(nn.Module):
    def __init__(self, model_channels=32, channel_mult=(1, 1, 2, 4), num_res_blocks=(1, 2, 3, 4),
                 num_middle_res_blocks=4, attention_levels=(3,), num_heads=4, in_channels=4,
                 out_channels=1, final_tanh=True, max_period=10.0):
        super().__init__()
        self.model_channels = model_channels
        self.final_tanh = final_tanh
        self.max_period = max_period
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        levels = len(channel_mult)
        ch = model_channels * channel_mult[0]
        self.input_blocks = nn.ModuleList(
            [TimestepEmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks[level]):
                layers = [ResBlock(ch, emb_dim, mult * model_channels)]
                ch = mult * model_channels
                if level in attention_levels:
                    layers.append(AttentionBlock(ch, num_heads))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                skip_channels.append(ch)

        middle = []
        for i in range(num_middle_res_blocks):
            if i > 0:
                middle.append(AttentionBlock(ch, num_heads))
            middle.append(ResBlock(ch, emb_dim, ch))
        self.middle_block = TimestepEmbedSequential(*middle)

        self.output_blocks = nn.ModuleList([])
        for level, mult in list(enumerate(channel_mult))[::-1]:
            for i in range(num_res_blocks[level] + 1):
                skip = skip_channels.pop()
                layers = [ResBlock(ch + skip, emb_dim, mult * model_channels)]
                ch = mult * model_channels
                if level in attention_levels:
                    layers.append(AttentionBlock(ch, num_heads))
                if level > 0 and i == num_res_blocks[level]:
                    layers.append(Upsample(ch))
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        # out.0 is parameterless in the reference's state_dict (its keys start at out.1);
        # an Identity keeps the indices so the names match.
        self.out = nn.Sequential(
            nn.Identity(), normalization(ch), nn.SiLU(),
            zero_module(nn.Conv2d(ch, out_channels, 3, padding=1)))

    def forward(self, x_t, image, t):
        emb = self.time_embed(timestep_embedding(t, self.model_channels, self.max_period)
                              .to(x_t.dtype))
        h = torch.cat([x_t, image], dim=1)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        h = self.out(h)
        return torch.tanh(h) if self.final_tanh else h


def reference_keys(path):
    keys = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, shape = line.rstrip("\n").split("\t")
            keys.append((name, tuple(int(s) for s in shape.split("x"))))
    return keys


if __name__ == "__main__":
    model = ReferenceUNet(**DEFAULT_CONFIG)
    n = sum(p.numel() for p in model.parameters())
    print("parameters:", n)
    shared = os.environ.get("AMBISEG_SHARED_DIR", os.path.join(os.path.dirname(__file__),
                                                                  "..", "..", "shared"))
    keys_path = os.path.join(shared, "reference", "unet_state_dict_keys.txt")
    if os.path.exists(keys_path):
        ours = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        theirs = reference_keys(keys_path)
        print("state_dict matches the reference keys:", ours == theirs)
        if ours != theirs:
            for a, b in zip(ours, theirs):
                if a != b:
                    print("first difference:", a, b)
                    break
            sys.exit(1)
    with torch.no_grad():
        f = model(torch.randn(1, 1, 128, 128), torch.randn(1, 3, 128, 128), torch.rand(1))
    print("output", tuple(f.shape), "finite:", bool(torch.isfinite(f).all()))
