#!/usr/bin/env python3
"""Trains and evaluates several ambiseg models under one CPU-time budget each, and writes
the comparison table of docs/results.md (the paper's Tables 1-2).

For every (model, seed, fold): `ambiseg train --cpu-budget B` (optionally selecting the
best checkpoint by validation GED), `ambiseg eval` (n = 4 and 16, raw and post-processed,
with the reference rows of --baselines) and `ambiseg sample` of one image x 16 masks, whose
CPU seconds are the sampling cost. Runs go in parallel, each process on one thread
(OMP_NUM_THREADS=1: the library's OpenMP pool and OpenBLAS read it), and a run whose files
exist is not run again, so an interrupted comparison resumes where it stopped.

Writes OUT/NAME/runs.csv (one row per run) and OUT/NAME/table.md (per model: the mean over
seeds, +- their sample standard deviation, of each seed's figure pooled over the folds,
i.e. the mean over every case, each scored by the model that did not train on it).

  python3 scripts/compare_models.py --name qubiq --data ../shared/data/qubiq-brain-growth/brain_growth_alpha.pkl \\
      --folds 5 --seeds 0,1 --cpu-budget 600 --select-best --val-cases 3 --jobs 2

Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import csv
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = ["diffusion", "prob_unet_aa", "prob_unet_aa_mix", "prob_unet_fc", "prob_unet_fc_mix", "phiseg"]
# The settings that change what a run is (checked against an earlier invocation's).
RUN_SETTINGS = ["data", "folds", "synthetic_images", "preset", "crop", "cpu_budget", "steps", "lr", "train_arg",
                "select_best", "val_cases", "val_every", "sample_steps", "eval_images"]
PROBE_STEPS = 1_000_000  # a probe stops at its budget, never at its steps
_print_lock = threading.Lock()


def say(*parts: object) -> None:
    with _print_lock:
        print(*parts, flush=True)


def warn(*parts: object) -> None:
    with _print_lock:
        print("warning:", *parts, file=sys.stderr, flush=True)


class RunFailed(Exception):
    pass


def one_thread_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def run_tool(cmd: list[str], log: Path) -> None:
    """Runs the command with stdout and stderr in `log`; a non-zero status is a RunFailed."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        out.write("$ " + " ".join(cmd) + "\n")
        out.flush()
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT, env=one_thread_env())
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RunFailed(f"exit {rc}: {' '.join(cmd[:2])} ... (see {log}): " + " | ".join(tail))


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def known_models(ambiseg: str) -> list[str]:
    out = subprocess.run([ambiseg, "help", "models"], capture_output=True, text=True, env=one_thread_env())
    if out.returncode != 0:
        sys.exit(f"compare_models: '{ambiseg} help models' failed: {out.stderr.strip()}")
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


class Comparison:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.root = Path(a.out) / a.name
        self.synthetic = a.data == "synthetic"
        self.folds = a.folds

    # --- the command lines -----------------------------------------------------------
    def model_args(self, model: str) -> list[str]:
        if model == "diffusion":
            return ["--model", "diffusion", "--config", self.a.preset]
        return ["--model", model, "--model-config", json.dumps({"preset": self.a.preset})]

    def data_args(self, fold: int | None, for_eval: bool = False) -> list[str]:
        args = ["--data", self.a.data]
        if self.synthetic:
            # Without folds eval reads only the test stream: no training images to make.
            n = self.a.synthetic_images if (fold is not None or not for_eval) else 1
            if n is not None:
                args += ["--synthetic-images", str(n)]
        if fold is not None:
            args += ["--folds", str(self.folds), "--fold", str(fold)]
        return args

    def train_args(self, model: str, seed: int, fold: int | None, steps: int, budget: float, out: Path,
                   validate: bool) -> list[str]:
        args = [self.a.ambiseg, "train", *self.model_args(model), *self.data_args(fold), "--crop", str(self.a.crop),
                "--seed", str(seed), "--steps", str(steps), "--cpu-budget", repr(budget), "--out", str(out)]
        if self.a.lr is not None:
            args += ["--lr", repr(self.a.lr)]
        if validate:
            every = self.a.val_every or max(1, steps // 10)
            args += ["--select-best-by", "val_ged", "--val-cases", str(self.a.val_cases), "--val-every", str(every)]
        return args + self.a.train_arg

    # --- steps: the learning-rate schedule should end near the budget ----------------
    def steps_for(self, model: str) -> int:
        if self.a.steps != "auto":
            return int(self.a.steps)
        probe = self.root / "probe" / model
        summary = probe / "summary.json"
        if not summary.exists():
            budget = min(max(1.0, 0.1 * self.a.cpu_budget), 30.0)
            fold = 0 if self.folds else None
            run_tool(self.train_args(model, 0, fold, PROBE_STEPS, budget, probe, False), probe / "train.log")
        s = read_json(summary)
        per_step = s["train_cpu_seconds"] / max(1, s["steps_done"])
        steps = max(1, int(self.a.cpu_budget / per_step))
        say(f"{model}: {per_step:.3f} CPU s per step in the probe -> --steps {steps} for {self.a.cpu_budget:g} s")
        return steps

    # --- one run ---------------------------------------------------------------------
    def run(self, model: str, seed: int, fold: int | None, steps: int) -> dict:
        d = self.root / "runs" / model / f"seed{seed}" / (f"fold{fold}" if fold is not None else "all")
        result_file = d / "result.json"
        if result_file.exists():
            return read_json(result_file)
        train = d / "train"
        if not (train / "summary.json").exists():
            cmd = self.train_args(model, seed, fold, steps, self.a.cpu_budget, train, self.a.select_best)
            if (train / "checkpoint.safetensors").exists():
                cmd.append("--resume")
            run_tool(cmd, d / "train.log")
        summary = read_json(train / "summary.json")
        ckpt = train / "checkpoint.safetensors"
        if self.a.select_best and (train / "best.safetensors").exists():
            ckpt = train / "best.safetensors"
        eval_dir = d / "eval"
        if not (eval_dir / "eval.json").exists():
            cmd = [self.a.ambiseg, "eval", "--ckpt", str(ckpt), *self.data_args(fold, for_eval=True), "-n", "4,16",
                   "--pp", "0.5", "--steps", str(self.a.sample_steps), "--baselines", "--out", str(eval_dir)]
            if self.a.eval_images:
                cmd += ["--images", str(self.a.eval_images)]
            run_tool(cmd, d / "eval.log")
        timing = d / "timing"
        if not (timing / "sample.json").exists():
            # One image at the model's crop size; the synthetic generator makes it quickly.
            cmd = [self.a.ambiseg, "sample", "--ckpt", str(ckpt), "--data", "synthetic", "--synthetic-images", "1",
                   "--synthetic-test", "1", "--images", "1", "-n", "16", "--steps", str(self.a.sample_steps),
                   "--out", str(timing)]
            run_tool(cmd, d / "sample.log")
        result = {"model": model, "seed": seed, "fold": fold, "checkpoint": ckpt.name,
                  "train": summary, "eval": read_json(eval_dir / "eval.json"),
                  "timing": read_json(timing / "sample.json")}
        if ckpt.name == "best.safetensors":
            result["best_step"] = result["eval"]["info"]["step"]
        result_file.write_text(json.dumps(result, indent=1) + "\n")
        return result


# --- tables ---------------------------------------------------------------------------
METRICS = [  # column, n, raw|pp, key
    ("GED² n=4", 4, "raw", "ged"), ("GED² n=4 pp", 4, "pp", "ged"),
    ("dice n=4", 4, "raw", "dice"), ("dice n=4 pp", 4, "pp", "dice"),
    ("GED² n=16", 16, "raw", "ged"), ("dice n=16", 16, "raw", "dice"), ("HM-IoU n=16", 16, "raw", "hm_iou"),
]
CSV_FIELDS = ["model", "seed", "fold", "status", "checkpoint", "best_step", "planned_steps", "steps_done",
              "stopped_by", "train_cpu_seconds", "cpu_budget", "parameters", "images",
              "ged4", "ged4_pp", "dice4", "dice4_pp", "hm_iou4", "hm_iou4_pp",
              "ged16", "ged16_pp", "dice16", "dice16_pp",
              "hm_iou16", "hm_iou16_pp", "passes_per_16_masks", "cpu_seconds_per_16_masks",
              "wall_seconds_per_16_masks"]


def rows_of(result: dict, method: str) -> dict:
    return {r["n"]: r for r in result["eval"]["results"] if r["method"] == method}


def csv_row(result: dict) -> dict:
    t, s = result["train"], result["timing"]
    model = rows_of(result, "model")
    row = {"model": result["model"], "seed": result["seed"], "fold": "" if result["fold"] is None else result["fold"],
           "status": "ok", "checkpoint": result["checkpoint"], "best_step": result.get("best_step", ""),
           "planned_steps": t["planned_steps"], "steps_done": t["steps_done"], "stopped_by": t["stopped_by"],
           "train_cpu_seconds": t["train_cpu_seconds"], "cpu_budget": t["cpu_budget"],
           "parameters": t["parameters"], "images": model[16]["images"],
           "passes_per_16_masks": 16 * s["network_passes_per_mask"],
           "cpu_seconds_per_16_masks": s["cpu_seconds"], "wall_seconds_per_16_masks": s["seconds"]}
    for n in (4, 16):
        for kind, suffix in (("raw", ""), ("pp", "_pp")):
            for key, name in (("ged", "ged"), ("dice", "dice"), ("hm_iou", "hm_iou")):
                row[f"{name}{n}{suffix}"] = model[n].get(kind, {}).get(key, "")
    return row


def pooled(results: list[dict], method: str, n: int, kind: str, key: str) -> float:
    """One seed's figure: the folds' means weighted by their images (the mean over all cases)."""
    total = images = 0.0
    for r in results:
        row = rows_of(r, method)[n]
        total += row[kind][key] * row["images"]
        images += row["images"]
    return total / images


def mean_sd(values: list[float], digits: int = 4) -> str:
    if not values:
        return "–"
    m = sum(values) / len(values)
    if len(values) < 2:
        return f"{m:.{digits}f}"
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return f"{m:.{digits}f} ± {sd:.{digits}f}"


def write_outputs(c: Comparison, models: list[str], results: dict, failures: dict) -> None:
    root = c.root
    with open(root / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for key in sorted(results, key=str):
            w.writerow(csv_row(results[key]))
        for (model, seed, fold), why in sorted(failures.items(), key=str):
            w.writerow({"model": model, "seed": seed, "fold": "" if fold is None else fold, "status": "failed: " + why})

    a = c.a
    head = ["model"] + [m[0] for m in METRICS] + ["parameters", "passes / 16 masks", "CPU s / 16 masks",
                                                 "steps", "train CPU s"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    by_model: dict[str, dict[int, list[dict]]] = {}
    for (model, seed, _), r in results.items():
        by_model.setdefault(model, {}).setdefault(seed, []).append(r)
    for model in models:
        seeds = by_model.get(model)
        if not seeds:
            lines.append(f"| {model} | " + " | ".join(["failed"] + [""] * (len(head) - 2)) + " |")
            continue
        cells = [model]
        for _, n, kind, key in METRICS:
            cells.append(mean_sd([pooled(rs, "model", n, kind, key) for rs in seeds.values()]))
        every = [r for rs in seeds.values() for r in rs]
        cells.append(f"{every[0]['train']['parameters']:,}")
        cells.append(str(16 * every[0]["timing"]["network_passes_per_mask"]))
        cells.append(mean_sd([r["timing"]["cpu_seconds"] for r in every], 3))
        cells.append(mean_sd([float(r["train"]["steps_done"]) for r in every], 0))
        cells.append(mean_sd([r["train"]["train_cpu_seconds"] for r in every], 1))
        lines.append("| " + " | ".join(cells) + " |")
    # Reference rows: they read the test labels (and on synthetic data the generator), not a
    # model, so any model's evaluations give them; the first model with results is used.
    reference = next((by_model[m] for m in models if m in by_model), None)
    if reference:
        for method in ("oracle", "raters", "majority"):
            if not rows_of(next(iter(reference.values()))[0], method):
                continue
            cells = [f"*{method}*"]
            for _, n, kind, key in METRICS:
                cells.append(mean_sd([pooled(rs, method, n, kind, key) for rs in reference.values()]))
            lines.append("| " + " | ".join(cells + [""] * 5) + " |")

    data = "synthetic lesions (test images 1,000,000…)" if c.synthetic and not c.folds else a.data
    split = f"{c.folds}-fold cross-validation (folds pooled: the mean over every case)" if c.folds else "fixed test set"
    notes = [
        f"# {a.name}", "",
        f"Data: {data}; {split}. Seeds: {', '.join(map(str, a.seeds))}: each cell is the mean ± sample standard "
        "deviation over the seeds.",
        f"Budget: {a.cpu_budget:g} CPU seconds of training steps per run (ambiseg train --cpu-budget), one thread "
        f"per process, {a.jobs} process(es) at once on {os.cpu_count()} CPU(s) ({cpu_name()}).",
        f"Models at preset `{a.preset}`, crop {a.crop}; steps: {a.steps} "
        "(auto: from a probe run's CPU seconds per step, so that the learning-rate schedule ends near the budget; "
        "the budget stops a run first if it is reached).",
        "Checkpoint: " + (f"the best by validation GED² (--select-best-by val_ged, --val-cases {a.val_cases})."
                          if a.select_best else "the last."),
        f"Evaluation: ambiseg eval, {a.sample_steps} sampling steps (diffusion), pp = relative-area post-processing "
        f"at 0.5{', first ' + str(a.eval_images) + ' test images' if a.eval_images else ''}. CPU s / 16 masks: "
        "ambiseg sample of one image x 16 masks, process CPU time of the sampling, mean over runs.",
        f"Written {datetime.datetime.now().isoformat(timespec='seconds')}; every run: runs.csv.", "",
    ]
    if failures:
        failed = [f"{m} seed {s}" + ("" if f is None else f" fold {f}") for m, s, f in sorted(failures, key=str)]
        notes += ["Failed runs (runs.csv has the reasons): " + ", ".join(failed), ""]
    (root / "table.md").write_text("\n".join(notes + lines) + "\n")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ambiseg", default=os.environ.get("AMBISEG", str(HERE.parent / "build" / "apps" / "ambiseg")),
                   help="the ambiseg binary (default: $AMBISEG or build/apps/ambiseg)")
    p.add_argument("--name", required=True, help="the comparison's folder under --out")
    p.add_argument("--out", default="results")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--data", default="synthetic", help="synthetic, or a data set path (e.g. the QUBIQ .pkl)")
    p.add_argument("--folds", type=int, default=None,
                   help="K-fold cross-validation (default: 5 for a data set path, none for synthetic; 0 = none)")
    p.add_argument("--synthetic-images", type=int, default=None, help="training images of the synthetic set")
    p.add_argument("--preset", default="example", help="every model's preset (diffusion: --config)")
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--cpu-budget", type=float, required=True, help="CPU seconds of training steps per run")
    p.add_argument("--steps", default="auto", help="auto (from a probe) or a number")
    p.add_argument("--lr", type=float, default=None, help="ambiseg train --lr (default: the CLI's)")
    p.add_argument("--train-arg", action="append", default=[], help="one more argument for every train command")
    p.add_argument("--select-best", action="store_true", help="--select-best-by val_ged and evaluate best.safetensors")
    p.add_argument("--val-cases", type=int, default=4)
    p.add_argument("--val-every", type=int, default=None, help="default: a tenth of the steps")
    p.add_argument("--sample-steps", type=int, default=10)
    p.add_argument("--eval-images", type=int, default=None, help="evaluate the first K test images only")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--fresh", action="store_true", help="delete OUT/NAME first (else finished runs are kept)")
    a = p.parse_args(argv)
    if not (a.cpu_budget > 0 and math.isfinite(a.cpu_budget)):
        p.error("--cpu-budget must be a positive number of CPU seconds")
    if a.steps != "auto" and not (a.steps.isdigit() and int(a.steps) > 0):
        p.error("--steps must be auto or a positive integer")
    if a.folds is None:
        a.folds = 0 if a.data == "synthetic" else 5
    if a.folds == 1 or a.folds < 0:
        p.error("--folds must be 0 (none) or at least 2")
    a.seeds = [int(s) for s in a.seeds.split(",") if s != ""]
    a.models = [m for m in a.models.split(",") if m]
    if a.jobs < 1:
        p.error("--jobs must be at least 1")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if not (shutil.which(a.ambiseg) or Path(a.ambiseg).is_file()):
        sys.exit(f"compare_models: no ambiseg binary at '{a.ambiseg}' (build it, or give --ambiseg)")
    a.ambiseg = str(Path(a.ambiseg).resolve()) if Path(a.ambiseg).is_file() else shutil.which(a.ambiseg)
    known = known_models(a.ambiseg)
    models = [m for m in a.models if m in known]
    for m in a.models:
        if m not in known:
            warn(f"{a.ambiseg} does not know the model '{m}' (it has {', '.join(known)}); skipped")
    if not models:
        sys.exit("compare_models: none of the models is known to the binary")
    if a.jobs > (os.cpu_count() or 1):
        warn(f"--jobs {a.jobs} exceeds the {os.cpu_count()} CPUs: runs will wait for each other")
    c = Comparison(a)
    if a.fresh and c.root.exists():
        shutil.rmtree(c.root)
    c.root.mkdir(parents=True, exist_ok=True)
    settings = c.root / "settings.json"
    if settings.exists():
        # Finished runs are reused, so they must have been made the same way; more models or
        # seeds, another binary path or --jobs are fine.
        earlier = read_json(settings)
        changed = [k for k in RUN_SETTINGS if earlier.get(k) != vars(a).get(k)]
        if changed:
            sys.exit(f"compare_models: {c.root} holds runs made with other " + ", ".join("--" + k.replace("_", "-")
                     for k in changed) + " (give --fresh to start again, or another --name)")
    settings.write_text(json.dumps(vars(a), indent=1) + "\n")

    failures: dict = {}
    steps: dict = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        probes = {m: pool.submit(c.steps_for, m) for m in models}
        for m, f in probes.items():
            try:
                steps[m] = f.result()
            except RunFailed as e:
                warn(f"{m}: the probe failed ({e}); its runs are skipped")
                for seed in a.seeds:
                    for fold in (range(c.folds) if c.folds else [None]):
                        failures[(m, seed, fold)] = "probe: " + str(e)
        keys = [(m, seed, fold) for m in models if m in steps for seed in a.seeds
                for fold in (range(c.folds) if c.folds else [None])]
        futures = {k: pool.submit(c.run, k[0], k[1], k[2], steps[k[0]]) for k in keys}
        results = {}
        for k, f in futures.items():
            try:
                results[k] = f.result()
                say(f"done: {k[0]} seed {k[1]}" + ("" if k[2] is None else f" fold {k[2]}"))
            except RunFailed as e:
                failures[k] = str(e)
                warn(f"{k[0]} seed {k[1]} fold {k[2]}: {e}")
    write_outputs(c, models, results, failures)
    say(f"wrote {c.root / 'table.md'} and {c.root / 'runs.csv'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
