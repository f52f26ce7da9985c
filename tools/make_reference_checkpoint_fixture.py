#!/usr/bin/python3
"""Writes tests/fixtures/reference_checkpoint/: a checkpoint of the reference PyTorch model
(tools/reference_unet.py, random weights) as the authors' train.py saves it, converted by
tools/convert_reference_checkpoint.py as a user would, and DDIM samples of the PyTorch
model from fixed noise, which the converted file must reproduce in ambiseg
(tests/train/test_reference_checkpoint.cpp).

    /usr/bin/python3 tools/make_reference_checkpoint_fixture.py      (Debian's torch 1.13)

Files:
  run.yaml               the run configuration in the authors' format (a small network)
  converted.safetensors  the converter's output (config metadata from run.yaml; F16, the
                         weights drawn as half-precision values)
  grey.npy               [B, H, W] the images, grey in [0, 1]
  image.npy              [B, 3, H, W] the images as the network sees them: the grey
                         repeated and ImageNet-normalised (the authors' LIDC input)
  noise.npy              [B, n, H, W] x_1 of every chain
  ddim_x0.npy            [B, n, H, W] x̂0 after DDIM (η = 0) with STEPS steps, in float64
The sampler is written here from SPEC.md §2, §3, §5 (cosine schedule, input scale b, the
reference's endpoint clipping to λ ∈ [−20, 20], x-prediction, no clipping of x̂0), in
float64 with the network in float64, so the C++ side (float) is compared with a stated
float tolerance.
"""
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

from reference_unet import ReferenceUNet

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "reference_checkpoint")

RUN_YAML = """\
# The authors' configuration format (configs/config_default.yaml), a small network.
training:
  max_iter: 2000
  batch_size: 4
  seed: 7
  lr: 0.0002
  lr_warmup_steps: 100
  lr_decay_steps: 500
  clip_grad_norm: 1.0
  loss_weights: SNR_plus1
  decouple_loss_weights: false
  betas: [0.9, 0.999]
  weight_decay: 0.01

unet:
  random_crop64: True
  num_res_blocks: [1, 1]
  num_channels: 32
  num_middle_res_blocks: 2
  attention_resolutions: [-1]
  channel_mult: [1, 2]
  num_heads: 2
  num_heads_upsample: -1
  final_act: tanh_if_x
  predict: x
  use_gen_prob_unet: False
  dropout: 0.0

diffusion:
  noise_schedule: cosine
  input_scale: 0.1
  var_type: large

sampling:
  num_timesteps: 4
  sampler_type: ddim
  clip_denoised: false
"""
NET = dict(model_channels=32, channel_mult=(1, 2), num_res_blocks=(1, 1), num_middle_res_blocks=2,
           attention_levels=(1,), num_heads=2, in_channels=4, out_channels=1, final_tanh=True, max_period=10.0)
B, N, SIZE, STEPS, INPUT_SCALE = 2, 3, 16, 4, 0.1
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def gamma(t, b=INPUT_SCALE):
    """SPEC §2: cosine γ, input-scaled, then clipped to λ(0) = 20, λ(1) = −20 (float64)."""
    def scaled(u):
        g = math.cos(math.pi * u / 2) ** 2
        return b * b * g / ((b * b - 1) * g + 1)
    k = (sigmoid(20) - sigmoid(-20)) / (scaled(0.0) - scaled(1.0))
    k0 = sigmoid(-20) - scaled(1.0) * k
    return scaled(t) * k + k0


def ddim(net, image, noise):
    """SPEC §5, DDIM η = 0 over t_i = i/STEPS; x-prediction: x̂0 = f."""
    b, n, h, w = noise.shape
    x = noise.reshape(b * n, 1, h, w).clone()
    cond = image.repeat_interleave(n, dim=0)
    x0 = None
    for i in range(STEPS, 0, -1):
        t, s = i / STEPS, (i - 1) / STEPS
        with torch.no_grad():
            x0 = net(x, cond, torch.full((b * n,), t, dtype=torch.float64))
        if s == 0:
            break
        at, st = math.sqrt(gamma(t)), math.sqrt(1 - gamma(t))
        as_, ss = math.sqrt(gamma(s)), math.sqrt(1 - gamma(s))
        eps = (x - at * x0) / st
        x = as_ * x0 + ss * eps
    return x0.reshape(b, n, h, w)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20251207)
    net = ReferenceUNet(**NET).double()
    # Every weight random (the zero-initialised head, out_layers.3 and proj_out too), so
    # that the samples depend on each of them.
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn_like(p) * (1.5 / math.sqrt(fan_in)))
            elif name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))
    net.eval()
    # Weights rounded to half precision (the converted file holds F16, half the bytes):
    # both sides use exactly these.
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.half().double())

    with open(os.path.join(OUT, "run.yaml"), "w") as f:
        f.write(RUN_YAML)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "authors.pt")
        # As the authors' train.py saves (save_train_ckpt): the model's state_dict in float.
        torch.save({"step": 1500, "model": {k: v.float() for k, v in net.state_dict().items()}, "seed": 7,
                    "log_loss_scale": 20.0}, ckpt)
        subprocess.run([sys.executable, os.path.join(HERE, "convert_reference_checkpoint.py"), ckpt,
                        os.path.join(OUT, "converted.safetensors"), "--config", os.path.join(OUT, "run.yaml"),
                        "--keys", "", "--dtype", "F16"], check=True)

    gen = torch.Generator().manual_seed(5)
    grey = torch.rand(B, 1, SIZE, SIZE, generator=gen, dtype=torch.float64)
    grey = grey.float()
    # As ambiseg encodes (data::encode_image, in float): the ImageNet-normalised grey.
    image = torch.cat([(grey - MEAN[c]) / STD[c] for c in range(3)], dim=1).double()
    grey = grey.double()
    noise = torch.randn(B, N, SIZE, SIZE, generator=gen, dtype=torch.float64).float().double()
    x0 = ddim(net, image, noise)
    np.save(os.path.join(OUT, "grey.npy"), grey[:, 0].float().numpy())
    np.save(os.path.join(OUT, "image.npy"), image.float().numpy())
    np.save(os.path.join(OUT, "noise.npy"), noise.float().numpy())
    np.save(os.path.join(OUT, "ddim_x0.npy"), x0.float().numpy())
    share = (x0 > 0).double().mean().item()
    print(f"wrote {OUT}: DDIM {STEPS} steps, {B} images x {N} chains, foreground share {share:.2f}, "
          f"|x0| mean {x0.abs().mean().item():.3f}")


if __name__ == "__main__":
    main()
