#!/usr/bin/env python3
"""Checks the include graph of the library against its layering (docs/architecture.md).

Reads every `#include "ambiseg/..."` (or <ambiseg/...>) of include/ambiseg/** and src/**,
maps each file to its module and fails, naming the file and the include, on an edge the
layering forbids, on an include of a file that does not exist, and on any cycle between
modules. `--self-test` runs the checker on small made-up trees, so that it cannot pass by
finding nothing. Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

MODULES = ("core", "ops", "diffusion", "optim", "metrics", "io", "data", "nn", "models", "train")

# Which modules each module may include (its own always). core <- {ops, diffusion, optim,
# metrics, io} <- nn <- models <- train; data sits beside io and may include it.
ALLOWED = {
    "core": set(),
    "ops": {"core"},
    "diffusion": {"core"},
    "optim": {"core"},
    "metrics": {"core"},
    "io": {"core"},
    "data": {"core", "io"},
    "nn": {"core", "ops"},
    "models": {"core", "ops", "diffusion", "optim", "nn", "io", "data", "metrics"},
    "train": {"core", "ops", "diffusion", "optim", "metrics", "io", "data", "nn", "models"},
}
# include/ambiseg/ambiseg.hpp includes everything; a module's all.hpp is that module's.
UMBRELLA = "umbrella"
TOP_LEVEL_FILES = {"ambiseg.hpp": UMBRELLA, "version.hpp": "core"}
SOURCE_SUFFIXES = {".hpp", ".h", ".cuh", ".cu", ".cpp", ".inl"}

INCLUDE = re.compile(r'^\s*#\s*include\s*[<"](ambiseg/[^">]+)[">]', re.MULTILINE)


class LayoutError(Exception):
    pass


def module_of_header(name: str) -> str:
    """Module of a path relative to include/ (ambiseg/<module>/...)."""
    parts = name.split("/")
    if len(parts) == 2 and parts[1] in TOP_LEVEL_FILES:
        return TOP_LEVEL_FILES[parts[1]]
    if len(parts) >= 3 and parts[1] in MODULES:
        return parts[1]
    raise LayoutError(f"{name}: not inside a known module ({', '.join(MODULES)})")


def module_of_source(relative: Path) -> str:
    """Module of a file under src/: a folder or file stem named after the module."""
    for part in relative.parts[1:-1]:
        if part in MODULES:
            return part
    if relative.stem in MODULES:
        return relative.stem
    raise LayoutError(f"{relative.as_posix()}: name it or a folder above it after a module "
                      f"({', '.join(MODULES)}) so that its includes can be checked")


def scan(root: Path, allowed: dict[str, set[str]]) -> list[str]:
    """All violations in the tree at root, as messages (empty: the layering holds)."""
    problems: list[str] = []
    files: list[tuple[Path, str]] = []
    include_dir = root / "include"
    for path in sorted((include_dir / "ambiseg").rglob("*")):
        if path.is_file() and path.suffix in SOURCE_SUFFIXES:
            name = path.relative_to(include_dir).as_posix()
            try:
                files.append((path, module_of_header(name)))
            except LayoutError as e:
                problems.append(f"include/{e}")
    for path in sorted((root / "src").rglob("*")):
        if path.is_file() and path.suffix in SOURCE_SUFFIXES:
            try:
                files.append((path, module_of_source(path.relative_to(root))))
            except LayoutError as e:
                problems.append(str(e))

    module_edges: dict[tuple[str, str], str] = {}  # (from, to) -> first file showing it
    for path, module in files:
        shown = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        for target in INCLUDE.findall(text):
            if not (include_dir / target).is_file():
                problems.append(f"{shown} ({module}) includes {target}: no such file in include/")
                continue
            try:
                target_module = module_of_header(target)
            except LayoutError as e:
                problems.append(f"{shown} ({module}) includes {target}: {e}")
                continue
            if module == UMBRELLA or target_module == module:
                continue
            if target_module == UMBRELLA or target_module not in allowed.get(module, set()):
                problems.append(f"{shown} ({module}) includes {target} ({target_module}): "
                                f"not allowed")
            module_edges.setdefault((module, target_module), f"{shown} includes {target}")

    problems.extend(module_cycles(module_edges))
    return problems


def module_cycles(edges: dict[tuple[str, str], str]) -> list[str]:
    """One message per cycle between modules, with an include that shows each edge."""
    graph: dict[str, list[str]] = {}
    for source, target in sorted(edges):
        graph.setdefault(source, []).append(target)
    cycles: list[list[str]] = []
    seen_cycles: set[frozenset[tuple[str, str]]] = set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in graph.get(node, []):
            if nxt in path:
                cycle = path[path.index(nxt):] + [nxt]
                key = frozenset(zip(cycle, cycle[1:]))
                if key not in seen_cycles:
                    seen_cycles.add(key)
                    cycles.append(cycle)
            elif len(path) < len(MODULES) + 1:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return [
        "module cycle " + " -> ".join(cycle) + ": "
        + "; ".join(edges[(a, b)] for a, b in zip(cycle, cycle[1:]))
        for cycle in cycles
    ]


def self_test() -> int:
    """The checker on made-up trees: a clean one passes, each broken one names its fault."""

    scratch = tempfile.TemporaryDirectory(prefix="check_includes_")
    trees = iter(range(1 << 30))

    def tree(files: dict[str, str]) -> Path:
        root = Path(scratch.name) / str(next(trees))
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(text)
        return root

    clean = {
        "include/ambiseg/ambiseg.hpp": '#include "ambiseg/train/all.hpp"\n#include "ambiseg/io/npy.hpp"\n',
        "include/ambiseg/core/tensor.hpp": "#pragma once\n",
        "include/ambiseg/ops/conv.hpp": '#include "ambiseg/core/tensor.hpp"\n',
        "include/ambiseg/diffusion/kernels.hpp": '#if X\n#include "ambiseg/diffusion/cuda/api.hpp"\n#endif\n',
        "include/ambiseg/diffusion/cuda/api.hpp": '#include <ambiseg/core/tensor.hpp>\n',
        "include/ambiseg/io/npy.hpp": '#include "ambiseg/core/tensor.hpp"\n',
        "include/ambiseg/data/pickles.hpp": '#include "ambiseg/io/npy.hpp"\n',
        "include/ambiseg/nn/unet.hpp": '#include "ambiseg/ops/conv.hpp"\n',
        "include/ambiseg/train/all.hpp": '#include "ambiseg/nn/unet.hpp"\n#include "ambiseg/data/pickles.hpp"\n',
        "src/cuda/diffusion.cu": '#include "ambiseg/diffusion/cuda/api.hpp"\n',
    }
    broken = {
        "diffusion includes ops": (
            {"include/ambiseg/diffusion/kernels.hpp": '#include "ambiseg/ops/conv.hpp"\n'},
            "include/ambiseg/diffusion/kernels.hpp (diffusion) includes ambiseg/ops/conv.hpp (ops): not allowed"),
        "ops includes nn (upwards)": (
            {"include/ambiseg/ops/conv.hpp": '#include <ambiseg/nn/unet.hpp>\n'},
            "include/ambiseg/ops/conv.hpp (ops) includes ambiseg/nn/unet.hpp (nn): not allowed"),
        "io includes data": (
            {"include/ambiseg/io/npy.hpp": '  #  include "ambiseg/data/pickles.hpp"\n'},
            "include/ambiseg/io/npy.hpp (io) includes ambiseg/data/pickles.hpp (data): not allowed"),
        "a module's all.hpp is that module's": (
            {"include/ambiseg/nn/all.hpp": '#include "ambiseg/train/all.hpp"\n'},
            "include/ambiseg/nn/all.hpp (nn) includes ambiseg/train/all.hpp (train): not allowed"),
        "compiled source": (
            {"src/cuda/diffusion.cu": '#include "ambiseg/ops/conv.hpp"\n'},
            "src/cuda/diffusion.cu (diffusion) includes ambiseg/ops/conv.hpp (ops): not allowed"),
        "missing header": (
            {"include/ambiseg/nn/unet.hpp": '#include "ambiseg/ops/gone.hpp"\n'},
            "include/ambiseg/nn/unet.hpp (nn) includes ambiseg/ops/gone.hpp: no such file"),
        "unknown folder": (
            {"include/ambiseg/misc/x.hpp": "\n"},
            "include/ambiseg/misc/x.hpp: not inside a known module"),
        "unmapped source": (
            {"src/cuda/kernels.cu": "\n"},
            "src/cuda/kernels.cu: name it or a folder above it after a module"),
    }
    failures = []
    if problems := scan(tree(clean), ALLOWED):
        failures.append(f"clean tree reported: {problems}")
    for what, (change, expected) in broken.items():
        problems = scan(tree({**clean, **change}), ALLOWED)
        if not any(p.startswith(expected) for p in problems):
            failures.append(f"{what}: expected '{expected}', got {problems}")
    # A cycle needs edges the real layering forbids: check it under a permissive one.
    permissive = {m: set(MODULES) for m in MODULES}
    cyclic = {**clean, "include/ambiseg/core/tensor.hpp": '#include "ambiseg/ops/conv.hpp"\n'}
    problems = scan(tree(cyclic), permissive)
    if not any(p.startswith("module cycle core -> ops -> core") for p in problems):
        failures.append(f"cycle core <-> ops not reported: {problems}")
    if scan(tree(clean), permissive):
        failures.append("clean tree reported a cycle under the permissive layering")
    scratch.cleanup()
    for f in failures:
        print("self-test FAILED:", f, file=sys.stderr)
    if not failures:
        print(f"self-test passed ({len(broken) + 1} broken trees caught, clean tree clean)")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the repository (holds include/ and src/)")
    parser.add_argument("--self-test", action="store_true", help="check the checker")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    problems = scan(args.root, ALLOWED)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} include rule violation(s); the layering is in "
              "docs/architecture.md and scripts/check_includes.py (ALLOWED)", file=sys.stderr)
        return 1
    print("include rules hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
