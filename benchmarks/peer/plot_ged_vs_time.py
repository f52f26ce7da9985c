#!/usr/bin/python3
"""Plot and tabulate the output of ged_vs_time.sh: GED² (n = 16) of ambiseg's and the
PyTorch peer's snapshots against process CPU time, with the oracle and the majority mask
as horizontal lines.  Writes OUT/ged_vs_time.png and OUT/ged_vs_time.md.

    /usr/bin/python3 benchmarks/peer/plot_ged_vs_time.py OUT
"""
import csv
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out = sys.argv[1]
    rows = list(csv.DictReader(open(os.path.join(out, "ged_vs_time.csv"))))
    baselines = {}
    path = os.path.join(out, "eval", "baselines", "eval.json")
    if os.path.exists(path):
        for r in json.load(open(path))["results"]:
            if r["method"] in ("oracle", "majority") and r["n"] == 16:
                baselines[r["method"]] = r["raw"]["ged"]

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = {"ambiseg": ("tab:blue", "o", "ambiseg (C++)"), "torch": ("tab:orange", "s", "PyTorch peer")}
    for run, (colour, marker, label) in styles.items():
        pts = [(float(r["cpu_seconds"]) / 60, float(r["ged16"])) for r in rows if r["run"] == run]
        if pts:
            ax.plot(*zip(*pts), marker=marker, color=colour, label=label)
    if "oracle" in baselines:
        ax.axhline(baselines["oracle"], color="tab:green", ls="--", label="oracle (fresh annotations)")
        ax.axhline(1.3 * baselines["oracle"], color="tab:green", ls=":", label="1.3 × oracle")
    if "majority" in baselines:
        ax.axhline(baselines["majority"], color="grey", ls="--", label="majority mask (deterministic)")
    ax.set_xlabel("training CPU time (minutes, one thread)")
    ax.set_ylabel("GED² (n = 16)")
    ax.set_title("Synthetic lesions: quality per CPU-minute")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "ged_vs_time.png"))

    lines = ["| run | step | CPU min | GED² n=16 | dice | HM-IoU |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['step']} | {float(r['cpu_seconds']) / 60:.1f} | {r['ged16']} | "
                     f"{r['dice16']} | {r['hm_iou16']} |")
    for name, value in baselines.items():
        lines.append(f"| {name} | | | {value:.4f} | | |")
    open(os.path.join(out, "ged_vs_time.md"), "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
