#!/usr/bin/python3
"""Writes tests/fixtures/unet_small.safetensors: the reference UNet (tools/reference_unet.py)
at a small config, its weights, inputs, output and the gradient of every parameter.

    /usr/bin/python3 tools/make_unet_fixture.py      (Debian's torch 1.13)

The test tests/nn/test_unet_fixture.cpp loads the file into ambiseg's UNet and compares.
- the config is stored as JSON in the metadata key "config" (ambiseg::nn::unet_config);
- weights are drawn, rounded to float16 (stored as F16, half the bytes, read exactly),
  then the model runs in float64, so the C++ test sees the exact weights and compares its
  double forward/backward against float64 results; everything else is F32;
- the reference's zero-initialised convs (head, out_layers.3, proj_out) and the GroupNorm
  affine parameters get random values so that every gradient is informative;
- loss = sum(r * f) with a fixed random r, so dL/df = r.
Tensors: "x_t", "image", "t", "r", "f", "grad/<name>" (F32), "param/<name>" (F16).
"""
import json
import os
import struct

import numpy as np
import torch

from reference_unet import ReferenceUNet

# 64 channels at level 1, so GroupNorm has 2 channels per group there: with one channel
# per group (C % 32 != 0, or C = 32) the ResBlock's per-channel time-embedding bias is
# cancelled by the following GroupNorm and the test could not see the embedding path.
CONFIG = dict(model_channels=32, channel_mult=[1, 2], num_res_blocks=[1, 0],
              num_middle_res_blocks=2, attention_levels=[1], num_heads=4, in_channels=4,
              out_channels=1, final_tanh=True, max_period=10.0)
BATCH, SIZE = 2, 32


def write_safetensors(path, tensors, metadata):
    """The safetensors layout, by hand (the package is not in Debian)."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        half = name.startswith("param/")
        data = np.ascontiguousarray(array, dtype="<f2" if half else "<f4").tobytes()
        header[name] = {"dtype": "F16" if half else "F32", "shape": list(array.shape),
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


def main():
    torch.manual_seed(1234)
    model = ReferenceUNet(**CONFIG)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or "in_layers.0" in name
                                 or "out_layers.0" in name or name.startswith("out.1")):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn_like(p))
            elif torch.count_nonzero(p) == 0:  # the reference's zero_module convs
                fan_in = model.state_dict()[name.replace(".bias", ".weight")][0].numel()
                p.uniform_(-fan_in ** -0.5, fan_in ** -0.5)
        for p in model.parameters():
            p.copy_(p.half().float())
    model = model.double()

    x_t = torch.randn(BATCH, 1, SIZE, SIZE).double()
    image = torch.randn(BATCH, CONFIG["in_channels"] - 1, SIZE, SIZE).double()
    t = torch.tensor([0.13, 0.77]).double()
    r = torch.randn(BATCH, 1, SIZE, SIZE).double()
    # float32-representable inputs, like the weights
    x_t, image, t, r = (v.float().double() for v in (x_t, image, t, r))

    f = model(x_t, image, t)
    (f * r).sum().backward()

    tensors = {"x_t": x_t.numpy(), "image": image.numpy(), "t": t.numpy(), "r": r.numpy(),
               "f": f.detach().numpy()}
    for name, p in model.named_parameters():
        tensors["param/" + name] = p.detach().numpy()
    for name, p in model.named_parameters():
        tensors["grad/" + name] = p.grad.numpy()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                       "unet_small.safetensors")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    write_safetensors(out, tensors, {"config": json.dumps(CONFIG),
                                     "generator": "tools/make_unet_fixture.py",
                                     "torch": torch.__version__})
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out}: {n} parameters, {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
