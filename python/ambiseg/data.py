"""The data loaders of ambiseg (docs/data.md), returning lists of cases.

Each case has ``id`` (str), ``image`` ([H, W] float32 grey in [0, 1]) and ``masks``
([m, H, W] uint8 0/1, one per annotator). A corrupt or hostile file raises ValueError
naming the file and the problem.
"""
import os
from typing import List, Union

from . import _ambiseg

Case = _ambiseg.Case
PathLike = Union[str, os.PathLike]


def load_lidc_pickle(path: PathLike) -> List[Case]:
    """The LIDC-IDRI pickle of the Probabilistic U-Net and PHiSeg (and the authors'
    repository): 128×128 crops with 4 annotations each. QUBIQ pickles in the same schema
    load the same way (load_qubiq_pickle)."""
    return list(_ambiseg.load_lidc_pickle(os.fspath(path)))


def load_qubiq_pickle(path: PathLike) -> List[Case]:
    """A QUBIQ pickle (e.g. brain growth: 7 raters, 128×128), the LIDC pickle's schema with
    extra keys (QUBIQ's alpha) ignored."""
    return list(_ambiseg.load_lidc_pickle(os.fspath(path)))


def load_lidc_crops_png(root: PathLike) -> List[Case]:
    """The LIDC crops as PNG folders (the Hierarchical Probabilistic U-Net's layout)."""
    return list(_ambiseg.load_lidc_crops_png(os.fspath(root)))


def load_cimd_folder(path: PathLike) -> List[Case]:
    """The CIMD example layout: <path>/<case>/image_*.jpg and label0_.jpg … (one mask per
    annotator), as in shared/data/lidc-cimd-samples/{training,testing}."""
    return list(_ambiseg.load_cimd_folder(os.fspath(path)))


def synthetic_lesions(count: int, size: int = 64, seed: int = 0, annotators: int = 4, first: int = 0) -> List[Case]:
    """Synthetic lesions with known ambiguity (docs/data.md): cases first … first+count−1
    of the generator with this seed, size×size, `annotators` masks each."""
    return list(_ambiseg.synthetic_lesions(int(count), int(size), int(seed), int(annotators), int(first)))
