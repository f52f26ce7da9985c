#!/usr/bin/env python3
"""Cross-validates sampler sweeps: the per-fold results of scripts/sampler_sweep.py (one
folder per fold, each with sweep.csv and runs/baselines/eval.json) averaged over the folds,
case-weighted (a fold's scores are means over its test images), with each cell's range over
the folds. Writes OUT/NAME/sweep.csv (mean, min and max per score), sweep.md and sweep.svg
(the plot of sampler_sweep.py, on the means).

  python3 scripts/combine_sweeps.py --name brain_growth_cv \\
      results/brain_growth_fold0 results/brain_growth_fold1 results/brain_growth_fold2

Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampler_sweep import reference_diversity, write_report  # noqa: E402

SCORES = ["ged", "diversity", "hm_iou", "dice", "sampling_cpu_seconds"]


def read_fold(folder: Path) -> tuple[list[dict], tuple[str, float] | None]:
    with open(folder / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["images"] = int(r["images"])
        for k in SCORES:
            r[k] = float(r[k])
    baselines = folder / "runs" / "baselines" / "eval.json"
    reference = reference_diversity(json.loads(baselines.read_text())) if baselines.exists() else None
    return rows, reference


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folds", nargs="+", type=Path, help="one sampler_sweep.py output folder per fold")
    p.add_argument("--name", required=True)
    p.add_argument("--out", type=Path, default=Path("results"))
    a = p.parse_args()
    folds = [read_fold(f) for f in a.folds]
    keyed: dict[tuple, list[dict]] = {}
    for rows, _ in folds:
        for r in rows:
            keyed.setdefault((r["label"], r["sampler"], r["spacing"], r["passes_per_mask"]), []).append(r)
    incomplete = [k for k, rs in keyed.items() if len(rs) != len(folds)]
    if incomplete:
        print(f"combine_sweeps: {len(incomplete)} results are missing from some folds, e.g. {incomplete[0]}",
              file=sys.stderr)
        return 1
    combined = []
    for (label, sampler, spacing, passes), rs in keyed.items():
        images = sum(r["images"] for r in rs)
        row = {"label": label, "sampler": sampler, "spacing": spacing, "passes_per_mask": int(passes),
               "folds": len(rs), "images": images}
        for k in SCORES:
            row[k] = sum(r[k] * r["images"] for r in rs) / images if k != "sampling_cpu_seconds" else \
                sum(r[k] for r in rs)
            row[k + "_min"] = min(r[k] for r in rs)
            row[k + "_max"] = max(r[k] for r in rs)
        combined.append(row)
    rows = [r for r in combined if r["sampler"]]
    points = [r for r in combined if not r["sampler"]]
    references = [ref for _, ref in folds if ref]
    reference = None
    if references:
        reference = (references[0][0], sum(v for _, v in references) / len(references))

    out = a.out / a.name
    out.mkdir(parents=True, exist_ok=True)
    samplers = list(dict.fromkeys((r["sampler"], r["spacing"]) for r in rows))
    passes = sorted({r["passes_per_mask"] for r in rows})
    with open(out / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(combined[0].keys()))
        w.writeheader()
        w.writerows(sorted(rows, key=lambda r: (samplers.index((r["sampler"], r["spacing"])), r["passes_per_mask"]))
                    + points)

    def cell(r: dict | None) -> str:
        if r is None:
            return ""
        return (f"{r['ged']:.3f} ({r['ged_min']:.3f}–{r['ged_max']:.3f}) / {r['diversity']:.3f} / "
                f"{r['hm_iou']:.3f}")

    write_report(out, f"GED² (range over the {len(folds)} folds) / diversity / HM-IoU, case-weighted means over "
                 f"{rows[0]['images']} test images in {len(folds)} folds", samplers, passes, rows, points, reference,
                 cell, " (mean over folds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
