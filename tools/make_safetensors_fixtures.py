#!/usr/bin/python3
"""Writes tests/fixtures/safetensors/mixed_dtypes.safetensors for tests/io/test_safetensors.cpp.

The file is written by hand (the `safetensors` package is not needed): an 8-byte
little-endian header length, a JSON header, raw little-endian data. Each F16/BF16 tensor
comes with an F32 twin holding the values numpy/torch convert it to, so the C++ reader's
conversion is checked against an independent implementation.

    /usr/bin/python3 tools/make_safetensors_fixtures.py [output_dir]
"""
import json
import os
import struct
import sys

import numpy as np
import torch

SPECIAL = [0.0, -0.0, 1.0, -2.0, 0.1, -3.14159265, 65504.0, -65504.0,
           6.103515625e-05,      # smallest normal half
           5.960464477539063e-08,  # smallest subnormal half
           6.097555160522461e-05,  # largest subnormal half
           -1.1920928955078125e-07,  # a negative subnormal half (2 ulp)
           1e-3, 1234.5, float("inf"), float("-inf"), float("nan")]


def half_values():
    rng = np.random.default_rng(7)
    random = rng.standard_normal(47) * np.exp(rng.uniform(-12, 10, 47))
    values = np.concatenate([np.array(SPECIAL), random]).astype(np.float16)
    return values, values.astype(np.float32)


def bf16_values():
    rng = np.random.default_rng(11)
    random = rng.standard_normal(47) * np.exp(rng.uniform(-80, 80, 47))
    extra = [3.0e38, -1e-38, 9.2e-41, -4.6e-41]  # near the top, and bfloat16 subnormals
    t = torch.tensor(np.concatenate([np.array(SPECIAL + extra), random]), dtype=torch.float32)
    b = t.to(torch.bfloat16)
    bits = b.view(torch.int16).numpy().view(np.uint16)
    return bits, b.to(torch.float32).numpy()


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "tests", "fixtures", "safetensors")
    os.makedirs(out_dir, exist_ok=True)
    h, h_expected = half_values()
    b_bits, b_expected = bf16_values()
    # Storage order deliberately differs from both header order and name order.
    tensors = [
        ("i64_values", "I64", [3], np.array([-1, 2**40, 7], dtype="<i8").tobytes()),
        ("bf16_values", "BF16", [len(b_bits)], b_bits.astype("<u2").tobytes()),
        ("half_expected", "F32", [len(h_expected)], h_expected.astype("<f4").tobytes()),
        ("half_matrix", "F16", [2, 3], np.array([[1, -2, 0.5], [65504, 2**-24, -0.0]], dtype="<f2").tobytes()),
        ("u8_mask", "U8", [2, 2], np.array([[0, 1], [255, 3]], dtype="u1").tobytes()),
        ("half_values", "F16", [len(h)], h.astype("<f2").tobytes()),
        ("bf16_expected", "F32", [len(b_expected)], b_expected.astype("<f4").tobytes()),
        ("f64_values", "F64", [2, 3], np.array([[1.0, 1e-300, -2.5], [np.pi, 1e300, -0.0]], dtype="<f8").tobytes()),
        ("rank5", "F32", [1, 2, 1, 2, 1], np.array([1, 2, 3, 4], dtype="<f4").tobytes()),
        ("empty", "F32", [0, 3], b""),
        ("flags", "BOOL", [3], bytes([1, 0, 1])),
    ]
    header = {"__metadata__": {"format": "pt", "made_by": "tools/make_safetensors_fixtures.py"}}
    offset = 0
    entries = {}
    for name, dtype, shape, data in tensors:
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    for name in sorted(entries, reverse=True):
        header[name] = entries[name]
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path = os.path.join(out_dir, "mixed_dtypes.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)
    print("wrote", path)


if __name__ == "__main__":
    main()
