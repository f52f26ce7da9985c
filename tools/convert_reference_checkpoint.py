#!/usr/bin/python3
"""Convert a checkpoint of the authors' PyTorch code to an ambiseg model file (safetensors).

The input is a torch .pt/.pth file holding either a state_dict or a dict that contains
one ({"model": state_dict, "optimizer": ..., "step": ...}; also "state_dict",
"model_state_dict", "net"). --source ema picks an EMA copy instead ("ema", "ema_model",
"model_ema", "ema_state_dict"; a state_dict, or a list of tensors in the model's
parameter order as guided-diffusion stores it). Prefixes added by DataParallel
("module.") or torch.compile ("_orig_mod.") are stripped when every key carries them;
--strip-prefix removes others. Floating-point tensors are written as F32 (or F64);
non-float entries (e.g. integer buffers) are skipped with a note; --dtype F16 halves the
file (the weights rounded to half precision).

With --keys (default: shared/reference/unet_state_dict_keys.txt when it exists) the names
and shapes are checked against the reference list: --strict turns any difference into an
error, otherwise it is reported. The output then loads by name with
ambiseg::io::load_parameters (docs/checkpoints.md).

The output is a complete ambiseg model: its `config` metadata (docs/checkpoints.md) comes
from the authors' run configuration (--config, their YAML, e.g. configs/config_default.yaml,
with `--set section.key=value` overrides as their command line takes them) or, without one,
from the paper's defaults (their config_default.yaml). The configuration is checked against
the weights (channels, levels, blocks per level, middle blocks, attention levels, image
channels), and what ambiseg cannot reproduce is refused with the key that asks for it. So
`ambiseg sample --ckpt converted.safetensors` and `ambiseg eval` work on it directly.
--weights-only writes the bare weights of earlier versions instead (load by name with
ambiseg::io::load_parameters).

    /usr/bin/python3 tools/convert_reference_checkpoint.py ckpt.pt model.safetensors \
        --config configs/config_default.yaml
    /usr/bin/python3 tools/convert_reference_checkpoint.py crop64_ckpt.pt crop64.safetensors \
        --config configs/config_crop64.yaml --source ema
"""
import argparse
import json
import os
import struct
import sys
import tempfile

import torch

from reference_config import ConfigError, ambiseg_config, authors_run_config

MODEL_KEYS = ("model", "state_dict", "model_state_dict", "net")
EMA_KEYS = ("ema", "ema_model", "model_ema", "ema_state_dict")
AUTO_PREFIXES = ("module.", "_orig_mod.")
DEFAULT_KEYS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                 "reference", "unet_state_dict_keys.txt")


def is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items())


def pick_state_dict(checkpoint, source, key):
    if key is not None:
        if not isinstance(checkpoint, dict) or key not in checkpoint:
            sys.exit(f"error: the checkpoint has no top-level key '{key}' "
                     f"(keys: {list(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__})")
        return checkpoint[key], key
    if source == "model" and is_state_dict(checkpoint):
        return checkpoint, "<top level>"
    if not isinstance(checkpoint, dict):
        sys.exit(f"error: expected a dict or a state_dict, found {type(checkpoint).__name__}")
    for k in (MODEL_KEYS if source == "model" else EMA_KEYS):
        if k in checkpoint:
            return checkpoint[k], k
    sys.exit(f"error: no {source} state found; top-level keys are {list(checkpoint)} "
             f"(use --key to name one)")


def model_state(checkpoint):
    if is_state_dict(checkpoint):
        return checkpoint
    for k in MODEL_KEYS:
        if isinstance(checkpoint, dict) and is_state_dict(checkpoint.get(k)):
            return checkpoint[k]
    return None


def strip_prefixes(state, extra_prefix):
    prefixes = list(AUTO_PREFIXES) + ([extra_prefix] if extra_prefix else [])
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if state and all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


def as_state_dict(obj, checkpoint, where):
    if is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, (list, tuple)) and all(torch.is_tensor(t) for t in obj):
        model = model_state(checkpoint)
        if model is None:
            sys.exit(f"error: '{where}' is a list of tensors but there is no model state_dict to name them")
        names = [k for k, v in model.items() if v.is_floating_point()]
        if len(names) != len(obj):
            sys.exit(f"error: '{where}' holds {len(obj)} tensors, the model {len(names)} float parameters")
        return dict(zip(names, obj))
    sys.exit(f"error: '{where}' is neither a state_dict nor a list of tensors ({type(obj).__name__})")


def plain_config(obj):
    """The authors' checkpoints store their run configuration under 'config' (a mapping of
    sections, or an object with attributes): as plain dicts, or None."""
    if obj is None:
        return None
    if not isinstance(obj, dict) and hasattr(obj, "__dict__"):
        obj = vars(obj)
    if not isinstance(obj, dict):
        return None
    out = {}
    for section, entries in obj.items():
        if not isinstance(entries, dict) and hasattr(entries, "__dict__"):
            entries = vars(entries)
        if isinstance(section, str) and isinstance(entries, dict):
            out[section] = dict(entries)
    return out or None


def read_keys_file(path):
    expected = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, dims = line.split("\t")
            expected[name] = [int(d) for d in dims.split("x")] if dims else []
    return expected


def check_against(state, expected):
    problems = []
    for name, shape in expected.items():
        if name not in state:
            problems.append(f"missing: {name} {shape}")
        elif list(state[name].shape) != shape:
            problems.append(f"shape: {name} is {list(state[name].shape)}, reference {shape}")
    problems += [f"unexpected: {name}" for name in state if name not in expected]
    return problems


def write_safetensors(path, tensors, metadata, dtype):
    np_dtype, name = {"F16": ("<f2", "F16"), "F32": ("<f4", "F32"), "F64": ("<f8", "F64")}[dtype]
    header = {"__metadata__": metadata} if metadata else {}
    blobs, offset = [], 0
    for key, t in tensors.items():
        data = t.detach().cpu().contiguous().numpy().astype(np_dtype).tobytes()
        header[key] = {"dtype": name, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", help="the PyTorch checkpoint (.pt/.pth)")
    ap.add_argument("output", help="the safetensors file to write")
    ap.add_argument("--source", choices=["model", "ema"], default="model",
                    help="which weights to convert (default: model)")
    ap.add_argument("--key", help="top-level key of the state to convert (overrides --source lookup)")
    ap.add_argument("--strip-prefix", default="", help="a further key prefix to strip when all keys have it")
    ap.add_argument("--keys", default=DEFAULT_KEYS_FILE if os.path.exists(DEFAULT_KEYS_FILE) else None,
                    help="reference name<TAB>shape list to check against ('' to skip)")
    ap.add_argument("--strict", action="store_true", help="fail on any difference from --keys")
    ap.add_argument("--dtype", choices=["F16", "F32", "F64"], default="F32",
                    help="the stored type (F16 halves the file and rounds every weight to half precision)")
    ap.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE",
                    help="extra __metadata__ entry (repeatable)")
    ap.add_argument("--config", help="the authors' run configuration (YAML); default: the paper's "
                                     "(their configs/config_default.yaml)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override one entry of the run configuration (repeatable), e.g. unet.num_heads=1")
    ap.add_argument("--weights-only", action="store_true",
                    help="write the weights alone, without ambiseg's config metadata")
    args = ap.parse_args()

    checkpoint = torch.load(args.input, map_location="cpu")
    obj, where = pick_state_dict(checkpoint, args.source, args.key)
    state = strip_prefixes(as_state_dict(obj, checkpoint, where), args.strip_prefix)

    tensors = {}
    for k, v in state.items():
        if v.is_floating_point():
            tensors[k] = v
        else:
            print(f"note: skipping non-float entry {k} ({v.dtype})", file=sys.stderr)

    if args.keys:
        problems = check_against(tensors, read_keys_file(args.keys))
        for p in problems[:20]:
            print(("error: " if args.strict else "warning: ") + p, file=sys.stderr)
        if len(problems) > 20:
            print(f"... and {len(problems) - 20} more", file=sys.stderr)
        if problems and args.strict:
            sys.exit(f"error: {len(problems)} differences from {args.keys}")

    metadata = {"source": os.path.basename(args.input), "source_key": where,
                "converted_by": "tools/convert_reference_checkpoint.py"}
    if not args.weights_only:
        embedded = None if args.config else plain_config(checkpoint.get("config") if isinstance(checkpoint, dict) else None)
        if embedded is not None:
            print("note: using the run configuration stored in the checkpoint ('config')", file=sys.stderr)
        try:
            run = authors_run_config(args.config, args.set, embedded)
            config, notes = ambiseg_config(run, {k: list(v.shape) for k, v in tensors.items()})
        except ConfigError as e:
            sys.exit(f"error: {args.config or 'the paper defaults'}: {e}")
        for n in notes:
            print("note: " + n, file=sys.stderr)
        metadata["config"] = json.dumps(config, sort_keys=True)
        metadata["reference_config"] = json.dumps(run, sort_keys=True)
    for item in args.metadata:
        if "=" not in item:
            sys.exit(f"error: --metadata expects KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        metadata[k] = v
    if isinstance(checkpoint, dict):
        for k in ("step", "epoch", "global_step"):
            if isinstance(checkpoint.get(k), int):
                metadata.setdefault(k, str(checkpoint[k]))

    write_safetensors(args.output, tensors, metadata, args.dtype)
    count = sum(t.numel() for t in tensors.values())
    print(f"wrote {args.output}: {len(tensors)} tensors, {count} parameters, {args.dtype}, from '{where}'")


if __name__ == "__main__":
    main()
