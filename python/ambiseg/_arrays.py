"""Array inputs: numpy arrays, DLPack producers (PyTorch, JAX, CuPy on the host, ...) and
array-likes, as C-contiguous numpy arrays of the wanted dtype — the same memory when the
input already is one (no copy), a converted copy otherwise."""
from typing import Optional

import numpy as np


def as_array(x, dtype: Optional[type], name: str) -> np.ndarray:
    if isinstance(x, np.ndarray):
        a = x
    elif hasattr(x, "__dlpack__"):
        try:
            a = np.from_dlpack(x)
        except (TypeError, BufferError, RuntimeError, ValueError) as e:
            raise TypeError(f"{name}: cannot read {type(x).__name__} through DLPack ({e}); pass a CPU tensor "
                            "(tensor.detach().cpu()) or a numpy array") from None
    elif hasattr(x, "__array__") or isinstance(x, (list, tuple)):
        a = np.asarray(x)
    else:
        raise TypeError(f"{name}: expected a numpy array, a tensor or an array-like, got {type(x).__name__}")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: dtype {a.dtype} is not a real number or bool type")
    return np.ascontiguousarray(a, dtype=dtype) if dtype is not None else np.ascontiguousarray(a)
