#!/usr/bin/env python3
"""Scores one trained diffusion checkpoint under every sampler and number of network passes
per mask, and other models' checkpoints as points: GED², diversity (the samples' mean
pairwise distance, GED's sample-sample term), HM-IoU and dice at n masks per image, with
the sampling CPU seconds. The figures of docs/results.md, "Few-step sampling".

A --point is plotted at the passes per mask its model reports (eval.json's
network_passes_per_mask: 1 for a Prob. U-Net, N for a student distilled to N steps);
points that share a label are one series, joined by a dashed line (the students of one
distillation: --point distilled=DIR/steps-4/... --point distilled=DIR/steps-1/...).

For every (sampler, spacing, passes): `ambiseg eval --ckpt CKPT --data ... -n N --pp none
--steps passes --sampler S --spacing G` (eval seed 0: every sampler starts from the same
x_1), one process per run on one thread, `--jobs` at once; a run whose eval.json exists is
not run again. Writes OUT/NAME/sweep.csv, OUT/NAME/sweep.md and OUT/NAME/sweep.svg (GED²
and diversity against passes per mask, log axis; the raters' or the oracle's diversity as
a dashed line, the --point models as markers).

  python3 scripts/sampler_sweep.py --ambiseg build/apps/ambiseg --name synthetic_sweep \\
      --ckpt runs/teacher/last.safetensors --data synthetic --images 32 --jobs 2 \\
      --point prob_unet_fc=runs/fc/last.safetensors \\
      --point distilled=runs/distilled/steps-2/checkpoint.safetensors \\
      --point distilled=runs/distilled/steps-1/checkpoint.safetensors

Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_SAMPLERS = ["ddpm_large:uniform_t", "ddim:uniform_t", "ddpm_large:uniform_lambda",
                    "dpmpp_2m:uniform_lambda", "dpmpp_3m:uniform_lambda", "sde_dpmpp_2m:uniform_lambda",
                    "unipc:uniform_lambda"]
COLOURS = ["#444444", "#999999", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]


def one_thread_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def run_eval(a: argparse.Namespace, out: Path, ckpt: str, extra: list[str]) -> dict:
    result = out / "eval.json"
    if not result.exists():
        out.mkdir(parents=True, exist_ok=True)
        cmd = [a.ambiseg, "eval", "--ckpt", ckpt, "--data", a.data, "-n", str(a.n), "--pp", "none",
               "--seed", "0", "--out", str(out), *a.data_arg, *extra]
        if a.images:
            cmd += ["--images", str(a.images)]
        with open(out / "eval.log", "w") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=one_thread_env())
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: see {out / 'eval.log'}")
    return json.loads(result.read_text())


def row_of(doc: dict, label: str, sampler: str, spacing: str, passes: int | str) -> dict:
    model = next(r for r in doc["results"] if r["method"] == "model")
    raw, info = model["raw"], doc["info"]
    return {"label": label, "sampler": sampler, "spacing": spacing, "passes_per_mask": passes,
            "images": model["images"], "n": model["n"], "ged": raw["ged"], "diversity": raw["diversity"],
            "hm_iou": raw["hm_iou"], "dice": raw["dice"], "sampling_cpu_seconds": info["sampling_cpu_seconds"],
            "model": info["model"], "step": info["step"]}


def point_series(points: list[dict]) -> dict[str, list[dict]]:
    """The points by label, each sorted by passes per mask."""
    by: dict[str, list[dict]] = {}
    for p in points:
        by.setdefault(p["label"], []).append(p)
    return {k: sorted(v, key=lambda p: int(p["passes_per_mask"])) for k, v in by.items()}


def reference_diversity(doc: dict) -> tuple[str, float] | None:
    for method in ("raters", "oracle"):
        for r in doc["results"]:
            if r["method"] == method:
                return method, r["raw"]["diversity"]
    return None


POINT_COLOURS = ["#000000", "#17becf", "#bcbd22", "#e377c2", "#8c564b", "#7f7f7f"]


def point_colour(j: int) -> str:
    return POINT_COLOURS[j % len(POINT_COLOURS)]


def marker(x: float, y: float, j: int, colour: str) -> str:
    """Series j's open marker centred at (x, y): squares and triangles in turn."""
    if j % 2 == 0:
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="none" stroke="{colour}" stroke-width="1.5"/>'
    return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} {x - 5:.1f},{y + 4:.1f}" fill="none" '
            f'stroke="{colour}" stroke-width="1.5"/>')


def svg_plot(rows: list[dict], points: list[dict], reference: tuple[str, float] | None, path: Path) -> None:
    """Two panels, GED² and diversity against passes per mask (log2 axis)."""
    width, height, margin = 460, 300, 55
    series: dict[str, list[dict]] = {}
    for r in rows:
        series.setdefault(f"{r['sampler']} ({r['spacing']})", []).append(r)
    passes = sorted({int(r["passes_per_mask"]) for r in rows + points} | {1})
    marked = point_series(points)
    x_lo, x_hi = math.log2(min(passes)), math.log2(max(passes))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width + 270}" height="{height + 20}" '
             'font-family="sans-serif" font-size="11">', '<rect width="100%" height="100%" fill="white"/>']
    for panel, (key, title) in enumerate((("ged", "GED² (lower is better)"), ("diversity", "diversity"))):
        ox = panel * width
        values = [r[key] for r in rows] + [p[key] for p in points]
        if key == "diversity" and reference:
            values.append(reference[1])
        y_lo, y_hi = min(values), max(values)
        pad = 0.05 * (y_hi - y_lo or 1.0)
        y_lo, y_hi = y_lo - pad, y_hi + pad

        def px(p: float) -> float:
            return ox + margin + (math.log2(p) - x_lo) / ((x_hi - x_lo) or 1.0) * (width - 1.5 * margin)

        def py(v: float) -> float:
            return height - margin + 10 - (v - y_lo) / (y_hi - y_lo) * (height - 1.5 * margin)

        parts.append(f'<text x="{ox + width / 2}" y="14" text-anchor="middle" font-weight="bold">{title}</text>')
        parts.append(f'<line x1="{px(passes[0])}" y1="{py(y_lo)}" x2="{px(passes[-1])}" y2="{py(y_lo)}" stroke="black"/>')
        parts.append(f'<line x1="{px(passes[0])}" y1="{py(y_lo)}" x2="{px(passes[0])}" y2="{py(y_hi)}" stroke="black"/>')
        for p in passes:
            parts.append(f'<text x="{px(p)}" y="{py(y_lo) + 14}" text-anchor="middle">{p}</text>')
        parts.append(f'<text x="{ox + width / 2}" y="{height + 12}" text-anchor="middle">network passes per mask</text>')
        for k in range(5):
            v = y_lo + (y_hi - y_lo) * k / 4
            parts.append(f'<text x="{px(passes[0]) - 4}" y="{py(v) + 4}" text-anchor="end">{v:.3f}</text>')
        for i, (name, rs) in enumerate(series.items()):
            rs = sorted(rs, key=lambda r: int(r["passes_per_mask"]))
            pts = " ".join(f"{px(int(r['passes_per_mask'])):.1f},{py(r[key]):.1f}" for r in rs)
            colour = COLOURS[i % len(COLOURS)]
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="1.5"/>')
            for r in rs:
                parts.append(f'<circle cx="{px(int(r["passes_per_mask"])):.1f}" cy="{py(r[key]):.1f}" r="2.5" '
                             f'fill="{colour}"/>')
        for j, ps in enumerate(marked.values()):
            if len(ps) > 1:
                pts = " ".join(f"{px(int(p['passes_per_mask'])):.1f},{py(p[key]):.1f}" for p in ps)
                parts.append(f'<polyline points="{pts}" fill="none" stroke="black" stroke-dasharray="2,2"/>')
            for p in ps:
                x, y = px(int(p["passes_per_mask"])), py(p[key])
                parts.append(marker(x + 3 * j, y, j, point_colour(j)))
        if key == "diversity" and reference:
            y = py(reference[1])
            parts.append(f'<line x1="{px(passes[0])}" y1="{y}" x2="{px(passes[-1])}" y2="{y}" stroke="black" '
                         'stroke-dasharray="4,3"/>')
    lx = 2 * width + 5
    for i, name in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<line x1="{lx}" y1="{40 + 16 * i}" x2="{lx + 18}" y2="{40 + 16 * i}" stroke="{colour}" '
                     'stroke-width="2"/>')
        parts.append(f'<text x="{lx + 24}" y="{44 + 16 * i}">{name}</text>')
    y0 = 40 + 16 * len(series)
    for j, (label, ps) in enumerate(marked.items()):
        y = y0 + 16 * j
        parts.append(marker(lx + 9, y, j, point_colour(j)))
        counts = ", ".join(str(p["passes_per_mask"]) for p in ps)
        parts.append(f'<text x="{lx + 24}" y="{y + 4}">{label} ({counts} pass{"es" if counts != "1" else ""})</text>')
    if reference:
        y = y0 + 16 * len(marked)
        parts.append(f'<line x1="{lx}" y1="{y}" x2="{lx + 18}" y2="{y}" stroke="black" stroke-dasharray="4,3"/>')
        owner = "raters'" if reference[0] == "raters" else "oracle's"
        parts.append(f'<text x="{lx + 24}" y="{y + 4}">{owner} diversity</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def write_report(out: Path, title: str, samplers: list, passes: list[int], rows: list[dict], points: list[dict],
                 reference: tuple[str, float] | None, cell, reference_note: str) -> None:
    """OUT/sweep.md (a table: a row per sampler and per point series, a column per passes;
    cell(row or None) formats one) and OUT/sweep.svg."""
    lines = [title, "", "| sampler | grid | " + " | ".join(f"{n} passes" for n in passes) + " |",
             "|---|---|" + "---:|" * len(passes)]
    for sampler, spacing in samplers:
        cells = [cell(next((r for r in rows if r["sampler"] == sampler and r["spacing"] == spacing
                            and int(r["passes_per_mask"]) == n), None)) for n in passes]
        lines.append(f"| {sampler} | {spacing} | " + " | ".join(cells) + " |")
    for label, ps in point_series(points).items():
        cells = [cell(next((r for r in ps if int(r["passes_per_mask"]) == n), None)) for n in passes]
        lines.append(f"| {label} | (its own) | " + " | ".join(cells) + " |")
    if reference:
        owner = "the raters'" if reference[0] == "raters" else "the oracle's"
        lines += ["", f"{owner} own diversity{reference_note}: {reference[1]:.3f}"]
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
    svg_plot(rows, points, reference, out / "sweep.svg")
    print(f"wrote {out / 'sweep.csv'}, {out / 'sweep.md'} and {out / 'sweep.svg'}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ambiseg", default="build/apps/ambiseg")
    p.add_argument("--ckpt", required=True, help="the diffusion checkpoint")
    p.add_argument("--data", required=True)
    p.add_argument("--data-arg", action="append", default=[], help="one more eval argument for the data, e.g. --fold=0")
    p.add_argument("--name", required=True)
    p.add_argument("--out", default="results")
    p.add_argument("--images", type=int, default=0, help="test images (default: all)")
    p.add_argument("-n", type=int, default=16, help="masks per image")
    p.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS), help="sampler:spacing,...")
    p.add_argument("--passes", default="1,2,4,8,10,25")
    p.add_argument("--point", action="append", default=[], help="LABEL=CKPT of a one-pass model")
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args()
    a.data_arg = [x for arg in a.data_arg for x in arg.split("=", 1)]
    out = Path(a.out) / a.name
    out.mkdir(parents=True, exist_ok=True)
    samplers = [s.split(":") for s in a.samplers.split(",")]
    passes = [int(x) for x in a.passes.split(",")]

    jobs = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        for sampler, spacing in samplers:
            for n in passes:
                d = out / "runs" / f"{sampler}_{spacing}_{n}"
                extra = ["--sampler", sampler, "--spacing", spacing, "--steps", str(n)]
                jobs[pool.submit(run_eval, a, d, a.ckpt, extra)] = (f"{sampler} ({spacing})", sampler, spacing, n)
        reference_job = pool.submit(run_eval, a, out / "runs" / "baselines", a.ckpt,
                                    ["--steps", "1", "--baselines"])
        for label_ckpt in a.point:
            label, ckpt = label_ckpt.split("=", 1)
            shared = sum(x.split("=", 1)[0] == label for x in a.point) > 1
            slug = f"{label}_{Path(ckpt).parent.name}" if shared else label  # distilled_steps-2
            jobs[pool.submit(run_eval, a, out / "runs" / f"point_{slug}", ckpt, [])] = (label, "", "", None)
        rows, points = [], []
        for job in concurrent.futures.as_completed(jobs):
            label, sampler, spacing, n = jobs[job]
            doc = job.result()
            if n is None:
                n = doc["info"]["network_passes_per_mask"]
            row = row_of(doc, label, sampler, spacing, n)
            (rows if sampler else points).append(row)
            print(f"{label:32s} {n:3d} passes  GED² {row['ged']:.4f}  diversity {row['diversity']:.4f}  "
                  f"HM-IoU {row['hm_iou']:.4f}", flush=True)
        reference = reference_diversity(reference_job.result())

    order = {f"{s}:{g}": i for i, (s, g) in enumerate(samplers)}
    rows.sort(key=lambda r: (order[f"{r['sampler']}:{r['spacing']}"], r["passes_per_mask"]))
    fields = list(rows[0].keys())
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows + points)

    def cell(r: dict | None) -> str:
        return f"{r['ged']:.3f} / {r['diversity']:.3f} / {r['hm_iou']:.3f}" if r else ""

    write_report(out, f"GED² / diversity / HM-IoU at n = {a.n} masks per image, {rows[0]['images']} images, "
                 f"checkpoint step {rows[0]['step']}", samplers, passes, rows, points, reference, cell, "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
