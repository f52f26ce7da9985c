#!/usr/bin/python3
"""Writes the small pickle fixtures of tests/data/test_pickle.cpp.

Run from the repository root with Debian's Python (numpy 1.24):
    /usr/bin/python3 tools/make_pickle_fixtures.py
Every value is a closed-form function of its index, so the C++ test checks the same
formulas; nothing here is random.

  values_p{2,3,4,5}.pkl  one dict of every supported kind, in each protocol
  lidc_mini_p4.pkl       the LIDC schema of SPEC §9 on four synthetic slices
  refuse_os_system.pkl   a pickle whose loading would call os.system (must be refused)
  amplified_p4.pkl       1000 LIDC keys sharing ONE case dict through the memo: 49 KB on
                         disk, 82 MB if decoded case by case (must hit the decode budget)
"""
import os
import pickle
import sys

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "pickle")


def values():
    u8 = np.arange(6, dtype=np.uint8).reshape(2, 3) * 40          # [[0,40,80],[120,160,200]]
    f32 = (np.arange(12, dtype=np.float32) / 8 - 0.5).reshape(3, 4)  # (i/8 - 0.5)
    f64 = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)                  # -1 + 2 i / 23
    boolean = (np.arange(10) % 3 == 0)                                 # i % 3 == 0
    big_endian = np.arange(5, dtype=">i4") * -7                        # -7 i
    fortran = np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3))  # C order 0..5
    return {
        "u8": u8,
        "f32": f32,
        "f64": f64,
        "bool": boolean,
        "i4_big_endian": big_endian,
        "i2_fortran": fortran,
        "masks": [np.eye(3, dtype=np.uint8), np.ones((3, 3), dtype=np.uint8)],
        "ints": (0, 255, 300, 70000, -5, 2**40, -(2**62)),
        "float": 1.5,
        "none": None,
        "flags": [True, False],
        "bytes": b"\x00\x01\xff",
        "text": "gr\u00fcn \u2713",
        "scalar_f64": np.float64(2.25),
        "scalar_i64": np.int64(-3),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def lidc_mini():
    # Keys "<patient>_slice<k>"; images float32 in [0,1]; four 0/1 uint8 masks.
    out = {}
    for patient, slices in (("p0", 2), ("p1", 1), ("p2", 1)):
        for k in range(slices):
            y, x = np.mgrid[0:8, 0:8]
            image = ((x + 8 * y + k) % 64 / 63.0).astype(np.float32)
            masks = [((x >= r) & (y >= r)).astype(np.uint8) for r in range(4)]
            out[f"{patient}_slice{k}"] = {"image": image, "masks": masks,
                                          "series_uid": f"1.2.3.{patient}"}
    return out


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def main():
    os.makedirs(OUT, exist_ok=True)
    for protocol in (2, 3, 4, 5):
        with open(os.path.join(OUT, f"values_p{protocol}.pkl"), "wb") as f:
            pickle.dump(values(), f, protocol=protocol)
    with open(os.path.join(OUT, "lidc_mini_p4.pkl"), "wb") as f:
        pickle.dump(lidc_mini(), f, protocol=4)
    shared = {"image": np.zeros((128, 128), dtype=np.uint8),
              "masks": [np.ones((128, 128), dtype=np.uint8)], "series_uid": "x"}
    with open(os.path.join(OUT, "amplified_p4.pkl"), "wb") as f:
        pickle.dump({f"p{i}_slice0": shared for i in range(1000)}, f, protocol=4)
    with open(os.path.join(OUT, "refuse_os_system.pkl"), "wb") as f:
        pickle.dump(_Evil(), f, protocol=4)
    print("numpy", np.__version__, "python", sys.version.split()[0], "->", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
