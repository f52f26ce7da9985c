#!/usr/bin/python3
"""Writes the image seed corpus of fuzz_image (tests/fuzz/seeds/image/): small PNGs in every
colour type the decoder converts (grey, 16-bit grey, RGB, RGBA, palette) and baseline,
progressive and chroma-subsampled JPEGs. Run: /usr/bin/python3 tests/fuzz/make_image_seeds.py"""
import os

import numpy as np
import PIL.Image as I

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "image")
os.makedirs(out, exist_ok=True)
y, x = np.mgrid[0:24, 0:20]
g = ((x * 11 + y * 7) % 256).astype(np.uint8)
rgb = np.stack([g, 255 - g, g // 2], -1)
I.fromarray(g).save(os.path.join(out, "grey.png"))
I.fromarray(rgb).save(os.path.join(out, "rgb.png"))
I.fromarray(np.stack([g, 255 - g, g // 2, g], -1)).save(os.path.join(out, "rgba.png"))
I.fromarray(g).convert("P").save(os.path.join(out, "palette.png"))
I.fromarray(g.astype(np.uint16) * 257).save(os.path.join(out, "grey16.png"))
I.fromarray(g).save(os.path.join(out, "baseline.jpg"), quality=80)
I.fromarray(rgb).save(os.path.join(out, "progressive.jpg"), quality=70, progressive=True)
I.fromarray(rgb).save(os.path.join(out, "subsampled.jpg"), quality=60, subsampling=2)
