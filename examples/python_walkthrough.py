#!/usr/bin/env python3
"""The Python walkthrough of docs/python.md, as one script (a few minutes on a laptop CPU):
train on synthetic lesions, sample, show the samples, evaluate.

    pip install .                       # from the repository root (docs/python.md)
    python examples/python_walkthrough.py [--out runs/walkthrough] [--steps 600]

Writes OUT/samples.png when matplotlib is installed.
"""
import argparse
import os
import time

import numpy as np

import ambiseg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/walkthrough")
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()

    # 1. Train: the CLI's options as keyword arguments, a progress callback per step.
    start = time.time()

    def progress(p):
        if p["step"] % 100 == 0 or p["step"] == p["total_steps"]:
            print(f"step {p['step']}/{p['total_steps']}  loss {p['loss']:.4f}  {p['seconds']:.0f} s")

    summary = ambiseg.train("synthetic", os.path.join(args.out, "run"), config="example", crop=64,
                            steps=args.steps, lr=1e-3, batch=8, seed=0, progress=progress)
    print(f"trained {summary['steps_done']} steps in {time.time() - start:.0f} s")

    # 2. Sample: 16 masks for each of 4 held-out synthetic images.
    model = ambiseg.load(os.path.join(args.out, "run", "checkpoint.safetensors"))
    cases = ambiseg.data.synthetic_lesions(4, size=64, seed=0, first=100_000)  # not among the training cases
    grey = np.stack([c.image for c in cases])          # [4, 64, 64] in [0, 1]
    annotations = np.stack([c.masks for c in cases])   # [4, 4, 64, 64]
    masks, x0 = model.sample(grey, n=16, steps=10, sampler="ddpm", seed=1)
    print(f"sampled {masks.shape}: foreground share {masks.mean():.3f}")

    # 3. Evaluate: the same dictionary as `ambiseg-eval --json`.
    scores = ambiseg.evaluate(masks, annotations, pp=0.5)["results"][0]
    print(f"GED² {scores['raw']['ged']:.3f}  HM-IoU {scores['raw']['hm_iou']:.3f}  "
          f"diversity {scores['raw']['diversity']:.3f}")

    # 4. Look: image | 4 annotations | 6 samples | mean of the 16 samples, per image.
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no picture (pip install matplotlib)")
        return
    columns = 1 + 4 + 6 + 1
    fig, axes = plt.subplots(len(cases), columns, figsize=(columns * 1.1, len(cases) * 1.15))
    for i in range(len(cases)):
        row = [grey[i]] + list(annotations[i]) + list(masks[i, :6]) + [masks[i].mean(axis=0)]
        for j, picture in enumerate(row):
            axes[i, j].imshow(picture, cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
    for j, title in enumerate(["image"] + ["annotation"] * 4 + ["sample"] * 6 + ["mean"]):
        axes[0, j].set_title(title, fontsize=7)
    fig.tight_layout(pad=0.2)
    path = os.path.join(args.out, "samples.png")
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
