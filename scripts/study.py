#!/usr/bin/env python3
"""The paper's design-space study (Christensen et al. 2025, §4.1 and Figs. 6-9), rerun with one
command on any data set ambiseg reads, at the scale the hardware allows.

  python3 scripts/study.py table3 --data synthetic --out results/study
  python3 scripts/study.py table3,input-scale --data ../shared/data/qubiq-brain-growth/brain_growth_alpha.pkl \\
      --folds 3 --out results/study_bg --seeds 0,1 --jobs 2
  python3 scripts/study.py --grid my_grid.json --data synthetic --out results/mine

Experiments (docs/study.md): table3 (prediction x loss weighting), steps (sampling steps,
DDPM and DDIM), sigmoid-bias, input-scale (b), pp (the relative-area ratio r at n = 4 and
16), or a grid file:

  {"train": {"prediction": ["x", "v"], "weighting": ["trunc_snr", "uniform"]},
   "fixed": {"schedule": "cosine"},
   "eval":  {"steps": [10], "sampler": ["ddpm"], "n": [4], "pp": [0.5]},
   "x": "weighting", "series": "prediction"}

Every training run is `ambiseg train` into OUT/runs/<what differs from the base>/seed-S[/fold-F]/
and every evaluation `ambiseg eval` beside it. A run whose summary.json exists is not trained
again, an evaluation whose eval.json exists not rerun, and a run killed half way resumes from
its checkpoint, so a killed study continues where it stopped. Runs go --jobs at a time, each
process on cpu_count/jobs threads; --shard k/N takes every N-th run (a cluster's machines
each run a shard into their own OUT, then the runs/ folders are copied together and
`--report-only` writes the report). Writes OUT/scores.csv (one row per scored set),
OUT/<experiment>.md and OUT/<experiment>.png (curves: mean over seeds, error bars one
standard deviation; cross-validated runs pool each seed's folds over every test case).

Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import study_figure  # noqa: E402
import study_report  # noqa: E402

# The paper's final model (§4): x-prediction, truncated-SNR weighting, cosine schedule, b = 0.1.
BASE_POLICY = {"prediction": "x", "weighting": "trunc_snr", "schedule": "cosine", "input-scale": "0.1"}

# Scales: the network, crop and learning rate of every run, its budget and the evaluation's size.
# "cpu": the example network (docs/training.md) at 32x32, sized so that table3 x 3 seeds on the
# synthetic lesions takes under 3 hours on 2 cores with --jobs 2 (docs/study.md).
SCALES = {
    "quick": {"train": {"config": "tiny", "crop": "32", "batch": "4", "lr": "1e-3"}, "steps": 20, "eval_images": 4,
              "synthetic_images": 64},
    "cpu": {"train": {"config": "example", "crop": "32", "batch": "8", "lr": "1e-3"}, "steps": 1500, "eval_images": 32,
            "synthetic_images": 4096},
    "paper": {"train": {"config": "paper", "crop": "128", "batch": "32", "lr": "1e-4"}, "steps": 50000,
              "eval_images": None, "synthetic_images": 4096},
}

# Train options a grid may vary or fix, with a check of each value (the CLI checks them again).
CHOICES = {"prediction": ["x", "eps", "v"], "weighting": ["snr", "trunc_snr", "snr_plus_one", "uniform", "sigmoid"],
           "schedule": ["cosine", "linear", "linear_simple", "parabola"], "crop-mode": ["random", "central"],
           "encoding": ["grey", "imagenet"], "config": ["default", "small", "tiny", "paper", "example"]}
REALS = {"input-scale": (1e-6, 1.0), "sigmoid-bias": (-100.0, 100.0), "lr": (0.0, 1.0), "ema": (0.0, 0.999999999),
         "weight-decay": (0.0, 1.0), "clip": (1e-12, 1e12)}
INTEGERS = {"crop": (8, 4096), "batch": (1, 4096), "warmup": (0, 1 << 40)}
TRAIN_KEYS = set(CHOICES) | set(REALS) | set(INTEGERS)
EVAL_AXES = {"steps": (1, 100000), "sampler": ["ddpm", "ddim", "ddpm_small", "ddpm_large", "dpmpp_2m", "dpmpp_3m",
                                               "sde_dpmpp_2m", "unipc", "unipc3"],
             "spacing": ["uniform_t", "uniform_lambda"], "n": (1, 4096), "pp": (0.0, 1.0)}
EVAL_DEFAULT = {"steps": [10], "sampler": ["ddpm"], "spacing": ["uniform_t"], "n": [4], "pp": [0.5]}

EXPERIMENTS = {
    "table3": {"train": {"prediction": ["x", "eps", "v"], "weighting": ["snr", "trunc_snr", "snr_plus_one", "uniform"]},
               "table": ["prediction", "weighting"]},
    "steps": {"train": {}, "eval": {"sampler": ["ddpm", "ddim"], "steps": [1, 2, 5, 10, 20, 50]}, "x": "steps",
              "series": "sampler", "log_x": True},
    "sigmoid-bias": {"train": {"weighting": ["sigmoid"], "sigmoid-bias": [-10, -8, -6, -4, -2, 0, 2, 4, 6, 8]},
                     "x": "sigmoid-bias", "reference": "table3"},
    "input-scale": {"train": {"input-scale": [0.01, 0.03, 0.1, 0.3, 1.0]}, "x": "input-scale", "series": "pp?",
                    "log_x": True},
    "pp": {"train": {}, "eval": {"n": [4, 16], "pp": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]}, "x": "pp",
           "series": "n", "postprocessed": True},
}
IDENTITY = ["data", "folds", "synthetic_images", "scale", "budget", "base", "eval_images"]
_lock = threading.Lock()


class StudyError(Exception):
    pass


def say(*parts: object) -> None:
    with _lock:
        print(*parts, flush=True)


number_text = study_report.number_text


def check_value(key: str, v, where: str) -> str:
    """The value as the CLI takes it, or a StudyError naming the grid entry."""
    if key in CHOICES:
        if v not in CHOICES[key]:
            raise StudyError(f"{where}: {key} '{v}' is not one of {', '.join(CHOICES[key])}")
        return str(v)
    lo, hi = REALS.get(key) or INTEGERS[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise StudyError(f"{where}: {key} {v!r} is not a number in [{lo:g}, {hi:g}]")
    if key in INTEGERS and v != int(v):
        raise StudyError(f"{where}: {key} {v!r} is not an integer")
    return number_text(int(v) if key in INTEGERS else float(v))


def check_eval(key: str, values, where: str) -> list:
    if key not in EVAL_AXES:
        raise StudyError(f"{where}: unknown evaluation setting '{key}' (known: {', '.join(EVAL_AXES)})")
    if not isinstance(values, list) or not values:
        raise StudyError(f"{where}: eval.{key} must be a non-empty list")
    spec = EVAL_AXES[key]
    for v in values:
        if isinstance(spec, list):
            if v not in spec:
                raise StudyError(f"{where}: eval.{key} '{v}' is not one of {', '.join(spec)}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not spec[0] <= v <= spec[1] or \
                (key in ("steps", "n") and v != int(v)):
            raise StudyError(f"{where}: eval.{key} {v!r} is outside [{spec[0]:g}, {spec[1]:g}]")
    if key == "pp" and values != sorted(set(values)):
        raise StudyError(f"{where}: eval.pp must increase")
    return values


def parse_experiment(name: str, spec: dict, where: str) -> dict:
    """A checked experiment: train axes, fixed train options, eval axes, and how to show it."""
    if not isinstance(spec, dict):
        raise StudyError(f"{where}: a grid is a JSON object with 'train', 'fixed' and 'eval'")
    unknown = set(spec) - {"train", "fixed", "eval", "x", "series", "log_x", "table", "reference", "postprocessed"}
    if unknown:
        raise StudyError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: train, fixed, eval, x, series, log_x)")
    axes, fixed = {}, {}
    for section, out in (("train", axes), ("fixed", fixed)):
        entries = spec.get(section, {})
        if not isinstance(entries, dict):
            raise StudyError(f"{where}: '{section}' must be an object of train options")
        for key, values in entries.items():
            if key not in TRAIN_KEYS:
                raise StudyError(f"{where}: unknown train option '{key}' in '{section}' "
                                 f"(known: {', '.join(sorted(TRAIN_KEYS))})")
            if section == "train":
                if not isinstance(values, list) or not values:
                    raise StudyError(f"{where}: train.{key} must be a non-empty list of values")
                out[key] = [check_value(key, v, where) for v in values]
            else:
                out[key] = check_value(key, values, where)
    evals = dict(EVAL_DEFAULT)
    for key, values in (spec.get("eval") or {}).items():
        evals[key] = check_eval(key, values, where)
    e = {"name": name, "axes": axes, "fixed": fixed, "eval": evals, "x": spec.get("x"), "series": spec.get("series"),
         "log_x": bool(spec.get("log_x", False)), "table": spec.get("table"), "reference": spec.get("reference"),
         "postprocessed": bool(spec.get("postprocessed", False))}
    shown = [k for k in (e["x"], e["series"]) if k and k != "pp?"]
    for k in shown:
        if k not in axes and k not in EVAL_AXES:
            raise StudyError(f"{where}: '{k}' (x or series) is neither a train axis nor an evaluation setting")
    return e


def load_grid(path: str) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise StudyError(f"--grid '{path}': cannot read it ({e.strerror})")
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise StudyError(f"--grid '{path}': not valid JSON ({e})")
    return parse_experiment(Path(path).stem, spec, f"--grid '{path}'")


class Study:
    def __init__(self, a: argparse.Namespace, experiments: list[dict]):
        self.a, self.experiments = a, experiments
        self.out = Path(a.out)
        self.scale = SCALES[a.scale]
        self.base = dict(self.scale["train"], **BASE_POLICY)
        # Real images larger than the scale's crop (QUBIQ brain growth: 128x128) want their own.
        if a.crop is not None:
            self.base["crop"] = str(a.crop)
        if a.crop_mode is not None:
            self.base["crop-mode"] = a.crop_mode
        self.folds = list(range(a.folds)) if a.folds else [None]
        self.eval_images = a.eval_images if a.eval_images is not None else self.scale["eval_images"]
        self.synthetic_images = a.synthetic_images or self.scale["synthetic_images"]
        if a.cpu_budget is not None:
            self.budget = {"cpu_seconds": a.cpu_budget, "steps": a.steps or 1_000_000}
        else:
            self.budget = {"steps": a.steps or self.scale["steps"]}

    def identity(self) -> dict:
        return {"data": self.a.data, "folds": self.a.folds, "synthetic_images": self.synthetic_images,
                "scale": self.a.scale, "budget": self.budget, "base": self.base, "eval_images": self.eval_images}

    # --- the runs ----------------------------------------------------------------------
    def runs(self) -> list[dict]:
        """Every training run of every experiment, once: its options, label, seed and fold."""
        # Seed by seed, experiment by experiment in the order given: a study stopped early has
        # whole experiments at fewer seeds rather than every experiment in part.
        found = {}
        for seed in self.a.seeds:
            for e in self.experiments:
                configs = [{}]
                for key, values in e["axes"].items():
                    configs = [dict(c, **{key: v}) for c in configs for v in values]
                for c in configs:
                    options = dict(self.base, **e["fixed"], **c)
                    differs = {k: v for k, v in options.items() if self.base.get(k) != v}
                    label = ",".join(f"{k}={differs[k]}" for k in sorted(differs)) or "base"
                    for fold in self.folds:
                        run = found.setdefault((label, seed, fold), {"label": label, "options": options, "seed": seed,
                                                                     "fold": fold, "evals": {}})
                        for point in eval_points(e):
                            run["evals"][point["label"]] = point
        return list(found.values())

    def run_dir(self, run: dict) -> Path:
        d = self.out / "runs" / run["label"] / f"seed-{run['seed']}"
        return d / f"fold-{run['fold']}" if run["fold"] is not None else d

    def data_args(self, run: dict) -> list[str]:
        args = ["--data", self.a.data]
        if self.a.data == "synthetic":
            args += ["--synthetic-images", str(self.synthetic_images)]
        if run["fold"] is not None:
            args += ["--folds", str(self.a.folds), "--fold", str(run["fold"])]
        return args

    def train_cmd(self, run: dict, resume: bool) -> list[str]:
        cmd = [self.a.ambiseg, "train", *self.data_args(run), "--out", str(self.run_dir(run) / "train"),
               "--seed", str(run["seed"]), "--steps", str(self.budget["steps"])]
        if "cpu_seconds" in self.budget:
            cmd += ["--cpu-budget", number_text(self.budget["cpu_seconds"])]
        for k, v in run["options"].items():
            cmd += [f"--{k}", v]
        return cmd + (["--resume"] if resume else []) + self.a.train_arg

    def eval_cmd(self, run: dict, point: dict) -> list[str]:
        cmd = [self.a.ambiseg, "eval", "--ckpt", str(self.run_dir(run) / "train" / "checkpoint.safetensors"),
               *self.data_args(run), "--out", str(self.run_dir(run) / "eval" / point["label"]),
               "--seed", str(run["seed"]), "--steps", str(point["steps"]), "--sampler", point["sampler"],
               "--spacing", point["spacing"], "-n", ",".join(str(n) for n in point["n"]),
               "--pp", ",".join(number_text(float(r)) for r in point["pp"]), "--baselines"]
        return cmd + (["--images", str(self.eval_images)] if self.eval_images else [])

    def execute(self, run: dict, env: dict) -> dict:
        d = self.run_dir(run)
        t0, worked = time.time(), False
        if not (d / "train" / "summary.json").exists():
            resume = (d / "train" / "checkpoint.safetensors").exists()
            call(self.train_cmd(run, resume), d / "train.log", env)
            worked = True
        for point in run["evals"].values():
            if not (d / "eval" / point["label"] / "eval.json").exists():
                call(self.eval_cmd(run, point), d / "eval" / f"{point['label']}.log", env)
                worked = True
        return {"seconds": time.time() - t0, "worked": worked}


def eval_points(e: dict) -> list[dict]:
    """One `ambiseg eval` per (sampler, steps, spacing); n and pp are lists within a call."""
    points = []
    for sampler in e["eval"]["sampler"]:
        for steps in e["eval"]["steps"]:
            for spacing in e["eval"]["spacing"]:
                n, pp = sorted(set(e["eval"]["n"])), e["eval"]["pp"]
                label = study_report.evaluation_label(sampler, steps, spacing, n, pp)
                points.append({"label": label, "sampler": sampler, "steps": steps, "spacing": spacing, "n": n, "pp": pp})
    return points


def call(cmd: list[str], log: Path, env: dict) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        tail = " | ".join(log.read_text(errors="replace").strip().splitlines()[-2:])
        raise StudyError(f"exit {rc} of `ambiseg {cmd[1]}` (see {log}): {tail}")


def check_folder(study: Study) -> None:
    """OUT is new, empty, or this study's: never mix runs of different settings."""
    marker = study.out / "study.json"
    if marker.exists():
        try:
            old = json.loads(marker.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise StudyError(f"{marker}: unreadable ({e}); is {study.out} a study folder?")
        mine = study.identity()
        differ = [k for k in IDENTITY if old.get("identity", {}).get(k) != mine.get(k)]
        if differ:
            details = "; ".join(f"{k}: {old.get('identity', {}).get(k)!r} there, {mine.get(k)!r} now" for k in differ)
            raise StudyError(f"--out {study.out} holds another study ({details}); choose another folder")
    elif study.out.exists() and any(study.out.iterdir()):
        raise StudyError(f"--out {study.out} exists, is not empty and holds no study.json: not a study folder")


def write_marker(study: Study) -> None:
    study.out.mkdir(parents=True, exist_ok=True)
    marker = study.out / "study.json"
    old = json.loads(marker.read_text()) if marker.exists() else {}
    names = sorted(set(old.get("experiments", [])) | {e["name"] for e in study.experiments})
    doc = {"tool": "scripts/study.py", "identity": study.identity(), "experiments": names,
           "grids": dict(old.get("grids", {}), **{e["name"]: e for e in study.experiments})}
    tmp = marker.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, marker)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="?", default="", help="comma-separated: " + ", ".join(EXPERIMENTS))
    p.add_argument("--grid", action="append", default=[], help="a JSON grid file (repeatable)")
    p.add_argument("--data", required=True, help="synthetic, or a data path as `ambiseg train --data` takes")
    p.add_argument("--out", required=True)
    p.add_argument("--folds", type=int, help="K-fold cross-validation: every run once per fold")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--scale", choices=list(SCALES), default="cpu")
    p.add_argument("--steps", type=int, help="training steps per run (default: the scale's)")
    p.add_argument("--cpu-budget", type=float, help="CPU seconds of training per run (then --steps only shapes the "
                                                    "learning-rate schedule)")
    p.add_argument("--crop", type=int, help="training crop of every run (default: the scale's)")
    p.add_argument("--crop-mode", choices=["random", "central"], help="training crops (default: ambiseg's)")
    p.add_argument("--eval-images", type=int, help="test images per evaluation (default: the scale's)")
    p.add_argument("--synthetic-images", type=int, help="training images of the synthetic set")
    p.add_argument("--train-arg", action="append", default=[], help="one more argument for every `ambiseg train`")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--shard", default="1/1", help="k/N: run every N-th training run, starting at the k-th")
    p.add_argument("--report-only", action="store_true", help="write the report from the runs present")
    p.add_argument("--dry-run", action="store_true", help="list the runs and commands, run nothing")
    p.add_argument("--ambiseg", default=str(Path(__file__).resolve().parent.parent / "build" / "apps" / "ambiseg"))
    return p.parse_args(argv)


def check_args(a: argparse.Namespace) -> list[dict]:
    try:
        a.seeds = [int(s) for s in a.seeds.split(",")]
    except ValueError:
        raise StudyError(f"--seeds '{a.seeds}': give comma-separated integers, e.g. 0,1,2")
    if len(set(a.seeds)) != len(a.seeds) or min(a.seeds) < 0:
        raise StudyError(f"--seeds {a.seeds}: distinct non-negative integers")
    if a.steps is not None and a.steps < 1:
        raise StudyError(f"--steps {a.steps}: a run needs at least 1 training step")
    if a.cpu_budget is not None and not (a.cpu_budget > 0 and math.isfinite(a.cpu_budget)):
        raise StudyError(f"--cpu-budget {a.cpu_budget}: give more than 0 CPU seconds")
    if a.folds is not None and a.folds < 2:
        raise StudyError(f"--folds {a.folds}: cross-validation needs at least 2 folds")
    if a.crop is not None and not 8 <= a.crop <= 4096:
        raise StudyError(f"--crop {a.crop}: give 8..4096 pixels")
    if a.eval_images is not None and a.eval_images < 1:
        raise StudyError(f"--eval-images {a.eval_images}: at least 1")
    if a.jobs < 1:
        raise StudyError(f"--jobs {a.jobs}: at least 1")
    try:
        k, n = (int(x) for x in a.shard.split("/"))
    except ValueError:
        raise StudyError(f"--shard '{a.shard}': give k/N, e.g. 2/4")
    if not 1 <= k <= n:
        raise StudyError(f"--shard {a.shard}: k must be in 1..N")
    a.shard_k, a.shard_n = k, n
    experiments = []
    for name in [x for x in a.experiments.split(",") if x]:
        if name not in EXPERIMENTS:
            raise StudyError(f"unknown experiment '{name}' (known: {', '.join(EXPERIMENTS)}; or --grid FILE)")
        experiments.append(parse_experiment(name, EXPERIMENTS[name], f"experiment {name}"))
    experiments += [load_grid(g) for g in a.grid]
    if not experiments:
        raise StudyError("name an experiment (" + ", ".join(EXPERIMENTS) + ") or give --grid FILE")
    if not a.report_only and not a.dry_run and not shutil.which(a.ambiseg) and not Path(a.ambiseg).is_file():
        raise StudyError(f"--ambiseg {a.ambiseg}: no such program (build it, or give its path)")
    return experiments


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    try:
        study = Study(a, check_args(a))
        check_folder(study)
        runs = study.runs()
        if not runs:
            raise StudyError("the grid has no runs")
        mine = [r for i, r in enumerate(runs) if i % a.shard_n == a.shard_k - 1]
    except StudyError as e:
        print(f"study: error: {e}", file=sys.stderr)
        return 2
    if a.dry_run:
        for r in mine:
            print(" ".join(study.train_cmd(r, False)))
            for p in r["evals"].values():
                print("  " + " ".join(study.eval_cmd(r, p)))
        print(f"{len(mine)} training runs, {sum(len(r['evals']) for r in mine)} evaluations")
        return 0
    write_marker(study)
    failures = []
    if not a.report_only:
        env = dict(os.environ)
        threads = str(max(1, (os.cpu_count() or 1) // a.jobs))
        env.setdefault("OMP_NUM_THREADS", threads)
        env.setdefault("OPENBLAS_NUM_THREADS", env["OMP_NUM_THREADS"])
        say(f"study: {len(mine)} training runs (shard {a.shard}) in {study.out}, {a.jobs} at a time, "
            f"{env['OMP_NUM_THREADS']} thread(s) each")
        t0, done = time.time(), 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
            futures = {pool.submit(study.execute, r, env): r for r in mine}
            for f in concurrent.futures.as_completed(futures):
                r = futures[f]
                done += 1
                name = f"{r['label']} seed {r['seed']}" + (f" fold {r['fold']}" if r["fold"] is not None else "")
                try:
                    result = f.result()
                    left = (time.time() - t0) / done * (len(mine) - done)
                    what = f"{result['seconds']:.0f} s" if result["worked"] else "done before"
                    say(f"[{done}/{len(mine)}] {name}: {what}; about {left / 60:.0f} min left")
                except StudyError as e:
                    failures.append(f"{name}: {e}")
                    say(f"[{done}/{len(mine)}] {name}: FAILED: {e}")
    written = study_report.write_report(study, runs)
    say("wrote " + ", ".join(str(p) for p in written))
    if failures:
        print("study: " + str(len(failures)) + " run(s) failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
