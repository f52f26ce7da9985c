"""ambiseg: diffusion models for ambiguous image segmentation, from Python.

A C++20 library (github: ambiseg) behind a small numpy API:

    import ambiseg
    summary = ambiseg.train(data="synthetic", out="runs/demo", steps=300, config="tiny")
    model = ambiseg.load("runs/demo/checkpoint.safetensors")
    cases = ambiseg.data.synthetic_lesions(4, size=64, seed=1)
    grey = np.stack([c.image for c in cases])                    # [B, H, W] in [0, 1]
    masks, x0 = model.sample(grey, n=16, steps=10, sampler="ddpm")  # [B, 16, H, W]
    scores = ambiseg.evaluate(masks, np.stack([c.masks for c in cases]), pp=0.5)

Arrays go in as numpy arrays, PyTorch (CPU) tensors or anything with ``__dlpack__`` or
``__array__``; a C-contiguous array of the right dtype is read in place, without a copy.
Results are new numpy arrays. Computation releases the GIL. Errors carry the C++ message:
``ValueError`` for bad shapes, values (NaN) and file contents (a corrupt or hostile
pickle), ``OSError`` for files that cannot be read, ``TypeError`` for wrong types.
docs/python.md walks through it.
"""
import json
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from . import _ambiseg
from . import data
from ._arrays import as_array

__all__ = ["Model", "Samples", "Policy", "load", "evaluate", "train", "distill", "samplers", "models",
           "data", "with_cuda", "__version__"]

__version__: str = _ambiseg.version
with_cuda: bool = _ambiseg.with_cuda
"""Whether this build can run models on a GPU (``device="cuda"``)."""


class Samples(NamedTuple):
    """Sampled masks and the x̂0 they were thresholded from (``masks = x0 > 0``)."""
    masks: np.ndarray  # [B, n, H, W] uint8, 0/1
    x0: np.ndarray     # [B, n, H, W] float32


class Model:
    """A trained model (any registered kind) loaded for sampling. Use :func:`load`."""

    def __init__(self, path: Union[str, os.PathLike], device: str = "cpu", ema: Optional[bool] = None):
        self._handle = _ambiseg.Model(os.fspath(path), device, ema)
        info = json.loads(self._handle.info_json())
        self.config: Dict[str, Any] = info["config"]
        """The training configuration stored in the checkpoint (trainer_config, docs/checkpoints.md)."""
        self.step: int = info["step"]
        self.ema_weights: bool = info["ema_weights"]
        self.kind: str = info["kind"]
        self.parameters: int = info["parameters"]
        self.image_channels: int = info["image_channels"]
        self.size_divisor: int = info["size_divisor"]
        self.path = os.fspath(path)

    @property
    def device(self) -> str:
        return self._handle.device

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def close(self) -> None:
        """Frees the weights (and the GPU's memory); later calls raise ValueError."""
        self._handle.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.parameters} parameters, step {self.step}, {self.device}"
        return f"ambiseg.Model({self.kind}, {state}, '{self.path}')"

    def encode(self, grey) -> np.ndarray:
        """Grey images [B, H, W] (or [H, W]) in [0, 1] → [B, C, H, W] as this model reads
        them (its training encoding: grey, or ImageNet-normalised RGB)."""
        g = as_array(grey, np.float32, "images")
        if g.ndim == 2:
            g = g[None]
        if g.ndim != 3:
            raise ValueError(f"images: grey images are [B, H, W] or [H, W], got shape {g.shape}")
        return self._handle.encode(g)

    def sample(self, images, n: int = 16, steps: int = 10, sampler: str = "ddpm", *, seed: int = 0,
               clip_x0: bool = False, init_noise=None, spacing: str = "uniform_t") -> Samples:
        """Draws n masks per image.

        images: grey [B, H, W] or [H, W] in [0, 1] (encoded as the model was trained), or
            already encoded [B, C, H, W] (C = ``image_channels``); H and W multiples of
            ``size_divisor``.
        n, steps, sampler, spacing, clip_x0: as ``ambiseg sample``'s -n, --steps,
            --sampler (:func:`samplers`), --spacing, --clip-x0. A distilled student samples
            with the settings it was distilled for.
        seed: the same seed gives the same masks as ``ambiseg sample --seed`` on the same
            images.
        init_noise: [B, n, H, W] x_1 of every chain (diffusion models), instead of drawing it.
        Returns Samples(masks [B, n, H, W] uint8, x0 [B, n, H, W] float32).
        """
        x = as_array(images, np.float32, "images")
        if x.ndim in (2, 3):
            x = self.encode(x)
        if x.ndim != 4:
            raise ValueError(f"images: expected [B, C, H, W] encoded or [B, H, W] grey, got shape {x.shape}")
        noise = None if init_noise is None else as_array(init_noise, np.float32, "init_noise")
        if noise is not None and noise.shape != (x.shape[0], n, x.shape[2], x.shape[3]):
            raise ValueError(f"init_noise: shape {noise.shape}, expected {(x.shape[0], n, x.shape[2], x.shape[3])}")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: {seed!r} is not a non-negative integer")
        masks, x0 = self._handle.sample(x, int(n), int(steps), str(sampler), bool(clip_x0), int(seed), noise,
                                        str(spacing))
        return Samples(masks, x0)


def load(path: Union[str, os.PathLike], device: str = "cpu", ema: Optional[bool] = None) -> Model:
    """Loads a checkpoint written by ``ambiseg train`` (or ``distill``, or a converted
    reference checkpoint). ema: None takes the EMA weights when the file has them."""
    return Model(path, device, ema)


def evaluate(samples, annotations, pp: Optional[float] = None, *, unbiased: bool = False,
             protocol: Optional[str] = None) -> Dict[str, Any]:
    """Scores sampled masks against the annotations of each image, as ``ambiseg-eval --json``.

    samples [B, n, H, W] (or [n, H, W]), annotations [B, m, H, W] (or [m, H, W]): any
    numeric or bool dtype, foreground where the value > 0.5 (NaN is an error).
    pp: also score after relative-area post-processing with this ratio (the paper: 0.5).
    unbiased: GED with the unbiased estimator (default: the paper's all-pairs one).
    protocol="paper": the paper's convention (the first 4 samples, all pairs, pp 0.5).
    Returns the same dictionary as ``ambiseg-eval --json`` (docs/metrics.md).
    """
    if protocol not in (None, "paper", "default"):
        raise ValueError(f"protocol: '{protocol}' (expected 'paper' or None)")
    arrays = []
    for name, a in (("samples", samples), ("annotations", annotations)):
        x = as_array(a, None, name)
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4:
            raise ValueError(f"{name}: expected [B, k, H, W] or [k, H, W], got shape {x.shape}")
        if x.dtype not in (np.bool_, np.uint8, np.int8, np.int32, np.int64, np.float32, np.float64):
            x = x.astype(np.float64)
        arrays.append(np.ascontiguousarray(x))
    return json.loads(_ambiseg.evaluate(arrays[0], arrays[1], pp, bool(unbiased), protocol == "paper"))


def _cli_args(command: str, options: Dict[str, Any]) -> List[str]:
    args = [command]
    for key, value in options.items():
        if value is None or value is False:
            continue
        name = key.rstrip("_")  # from_=4 → --from (a Python keyword)
        flag = "--" + name.replace("_", "-") if len(name) > 1 else "-" + name
        if value is True:
            args.append(flag)
        elif isinstance(value, (list, tuple)):
            args += [flag, ",".join(str(v) for v in value)]
        else:
            args += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
    return args


def _run(command: str, out, progress: Optional[Callable[[Dict[str, Any]], Optional[bool]]],
         options: Dict[str, Any]) -> Dict[str, Any]:
    result = _ambiseg.run_cli(_cli_args(command, dict(out=out, **options)), progress)
    summary_path = os.path.join(os.fspath(out), "summary.json")
    summary = {}
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            summary = json.load(f)
    if result.interrupted:
        raise KeyboardInterrupt(f"ambiseg.{command}: stopped at step {summary.get('steps_done', '?')}; "
                                f"the checkpoint in '{os.fspath(out)}' is that step's (resume=True continues)")
    return summary


def train(data: Union[str, os.PathLike], out: Union[str, os.PathLike], *,
          progress: Optional[Callable[[Dict[str, Any]], Optional[bool]]] = None, **options) -> Dict[str, Any]:
    """Trains a model as ``ambiseg train`` does and returns its summary.json.

    data: "synthetic" or a data path (LIDC pickle, QUBIQ folder, ...), as --data.
    out: the run's folder (checkpoint.safetensors, log.csv, loss.png, summary.json).
    options: the command's options as keyword arguments, dashes as underscores:
        steps=2000, batch=8, model="diffusion", config="tiny", lr=1e-4, ema=0.999,
        seed=0, device="cuda", precision="bf16", cpu_budget=600, resume=True, ...
        (True adds a flag, a list is joined with commas; ``ambiseg help`` lists them).
    progress: called after every step with {step, total_steps, loss, lr, grad_norm,
        seconds}; returning False stops the run there, checkpointed.
    Ctrl-C stops the run at the current step, writes its checkpoint and raises
    KeyboardInterrupt; ``resume=True`` continues it.
    """
    return _run("train", out, progress, dict(data=data, **options))


def distill(out: Union[str, os.PathLike], *, progress=None, **options) -> Dict[str, Any]:
    """Distils a trained diffusion model into a few-step student, as ``ambiseg distill``
    (docs/distillation.md): ckpt= the teacher's checkpoint, data=, to= the student's steps,
    from_= the teacher's (a trailing underscore is dropped: ``from`` is a Python keyword),
    steps= per round, and its other options as keyword arguments (see train). Returns the
    last round's summary.json; DIR/distill.json sums the rounds up."""
    summary = _run("distill", out, progress, options)
    path = os.path.join(os.fspath(out), "distill.json")
    if os.path.exists(path):
        with open(path) as f:
            summary = dict(json.load(f))
    return summary


def samplers() -> List[str]:
    """The sampler names diffusion models accept (``sample(sampler=...)``)."""
    return list(_ambiseg.sampler_names())


def models() -> List[str]:
    """The registered model kinds (``train(model=...)``)."""
    return list(_ambiseg.model_kinds())


class Policy:
    """A diffusion policy by name (docs/diffusion.md): a schedule with input scaling and
    the reference's endpoint clipping, a prediction type and a loss weighting.

        p = ambiseg.Policy("cosine", input_scale=0.1)
        p.alpha(0.5), p.sigma(0.5), p.log_snr(0.5), p.weight(0.5), p.sampling_times(10)
    """

    def __init__(self, schedule: str = "cosine", input_scale: float = 0.1, prediction: str = "x",
                 weighting: str = "snr_plus_one", sigmoid_bias: float = 0.0):
        self._p = _ambiseg.Policy(schedule, float(input_scale), prediction, weighting, float(sigmoid_bias))

    def __repr__(self) -> str:
        return f"ambiseg.Policy({self._p.describe()})"

    def log_snr(self, t: float) -> float:
        """λ(t) = log SNR(t) of the scaled, clipped schedule, t in [0, 1]."""
        return self._p.log_snr(float(t))

    def alpha(self, t: float) -> float:
        """α(t) = √sigmoid(λ(t))."""
        return self._p.alpha(float(t))

    def sigma(self, t: float) -> float:
        """σ(t) = √sigmoid(−λ(t))."""
        return self._p.sigma(float(t))

    def weight(self, t: float) -> float:
        """The loss weighting w(t)."""
        return self._p.weight(float(t))

    def sampling_times(self, steps: int, spacing: str = "uniform_t") -> List[float]:
        """The steps + 1 times a sampler visits, from 1 down to 0."""
        return list(self._p.sampling_times(int(steps), spacing))
