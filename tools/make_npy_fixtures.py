#!/usr/bin/python3
"""Writes the small .npy fixtures of tests/io/test_npy.cpp with numpy itself.

Run from the repository root:  /usr/bin/python3 tools/make_npy_fixtures.py
The values are chosen so the C++ test can spell them out: every array is
np.arange(k).reshape(shape) cast to the dtype (bool: arange % 2 == 1), except where noted.
"""
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "npy")


def save(name, array, version=None):
    path = os.path.join(OUT, name)
    with open(path, "wb") as f:
        np.lib.format.write_array(f, array, version=version, allow_pickle=False)


def main():
    os.makedirs(OUT, exist_ok=True)
    base = np.arange(6).reshape(2, 3)
    for code in ["u1", "i1", "i2", "i4", "i8", "u2", "u4", "u8", "f4", "f8"]:
        save(f"arange_2x3_{code}.npy", base.astype("<" + code))
    save("arange_2x3_b1.npy", (base % 2 == 1))
    # big-endian
    save("arange_2x3_be_f8.npy", base.astype(">f8"))
    save("arange_2x3_be_i4.npy", base.astype(">i4"))
    # fortran order: same logical values, column-major bytes
    save("arange_2x3x4_fortran_f4.npy", np.asfortranarray(np.arange(24).reshape(2, 3, 4).astype("<f4")))
    # other format versions
    save("arange_2x3_v2_f4.npy", base.astype("<f4"), version=(2, 0))
    save("arange_2x3_v3_f4.npy", base.astype("<f4"), version=(3, 0))
    # negative, fractional and special values
    save("special_f8.npy", np.array([-1.5, 0.25, np.inf, -0.0], dtype="<f8"))
    save("nan_f4.npy", np.array([[0.0, np.nan], [1.0, 0.0]], dtype="<f4"))
    save("negative_i8.npy", np.array([-3, 0, 300], dtype="<i8"))
    # degenerate shapes
    save("scalar_f8.npy", np.array(2.5, dtype="<f8"))
    save("empty_0x3_f4.npy", np.zeros((0, 3), dtype="<f4"))
    # unsupported dtypes
    save("complex_c8.npy", np.zeros(2, dtype="<c8"))
    save("half_f2.npy", np.zeros(2, dtype="<f2"))
    save("structured.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))
    # a tiny mask set for the evaluation tests: 1 image, 2 samples and 2 annotations of 2x2
    s = np.array([[[[1, 0], [0, 0]], [[1, 1], [0, 0]]]], dtype=bool)
    a = np.array([[[[1, 0], [0, 0]], [[0, 0], [0, 1]]]], dtype=np.float32)
    save("eval_samples_1x2x2x2_b1.npy", s)
    save("eval_annotations_1x2x2x2_f4.npy", a)


if __name__ == "__main__":
    main()
