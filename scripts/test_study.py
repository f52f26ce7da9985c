#!/usr/bin/env python3
"""Tests of scripts/study.py that need no ambiseg binary: the refusals (each before any
training), the run plan, resuming, sharding, and the report's aggregation on hand-made
eval.json files. Run: python3 scripts/test_study.py (ctest runs it as study_self_test).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import tempfile
import unittest
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import study  # noqa: E402
import study_report  # noqa: E402


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = study.main(argv)
    return code, out.getvalue(), err.getvalue()


def set_metrics(ged: float, dice: float) -> dict:
    ci = {"score": 0.5, "combined_sensitivity": 0.5, "max_dice_matching": 0.5, "diversity_agreement": 0.5}
    return {"ged": ged, "dice": dice, "iou": 0.3, "hm_iou": 0.4, "diversity": 0.2, "ncc": 0.1, "qubiq": 0.6,
            "ci": ci, "ci_authors": ci}


def fake_eval(path: Path, rows: list[tuple], images: int, steps: int = 10, sampler: str = "ddpm_large") -> None:
    """rows: (method, n, pp_ratio, ged, dice)"""
    path.mkdir(parents=True, exist_ok=True)
    doc = {"info": {"sampler": sampler, "steps": steps, "spacing": "uniform_t"},
           "results": [{"method": m, "n": n, "m": 4, "images": images, "height": 8, "width": 8,
                        "ged_estimator": "all_pairs", "pp_ratio": pp, "raw": set_metrics(g, d),
                        **({"pp": set_metrics(g - 0.01, d)} if pp is not None else {})}
                       for m, n, pp, g, d in rows]}
    (path / "eval.json").write_text(json.dumps(doc))


class Refusals(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp())

    def refuse(self, argv: list[str], fragment: str) -> None:
        code, out, err = run(argv + ["--ambiseg", sys.executable])
        self.assertEqual(code, 2, err)
        self.assertIn(fragment, err)
        self.assertFalse((self.tmp / "o" / "runs").exists(), "nothing may run before the checks")

    def grid(self, doc) -> str:
        p = self.tmp / "grid.json"
        p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        return str(p)

    def test_unknown_experiment(self):
        self.refuse(["tabel3", "--data", "synthetic", "--out", str(self.tmp / "o")], "unknown experiment 'tabel3'")

    def test_unknown_flag_in_grid(self):
        self.refuse(["--grid", self.grid({"train": {"weigthing": ["snr"]}}), "--data", "synthetic", "--out",
                     str(self.tmp / "o")], "unknown train option 'weigthing'")
        self.refuse(["--grid", self.grid({"eval": {"stepz": [4]}}), "--data", "synthetic", "--out",
                     str(self.tmp / "o")], "unknown evaluation setting 'stepz'")
        self.refuse(["--grid", self.grid({"trian": {}}), "--data", "synthetic", "--out", str(self.tmp / "o")],
                    "unknown key(s) trian")

    def test_bad_values_in_grid(self):
        self.refuse(["--grid", self.grid({"train": {"prediction": ["y"]}}), "--data", "synthetic", "--out",
                     str(self.tmp / "o")], "prediction 'y' is not one of x, eps, v")
        self.refuse(["--grid", self.grid({"train": {"input-scale": [0]}}), "--data", "synthetic", "--out",
                     str(self.tmp / "o")], "input-scale 0 is not a number in")
        self.refuse(["--grid", self.grid("{not json"), "--data", "synthetic", "--out", str(self.tmp / "o")],
                    "not valid JSON")

    def test_grid_without_runs(self):
        self.refuse(["--grid", self.grid({"train": {"weighting": []}}), "--data", "synthetic", "--out",
                     str(self.tmp / "o")], "must be a non-empty list")

    def test_zero_budget(self):
        self.refuse(["table3", "--steps", "0", "--data", "synthetic", "--out", str(self.tmp / "o")], "--steps 0")
        self.refuse(["table3", "--cpu-budget", "0", "--data", "synthetic", "--out", str(self.tmp / "o")],
                    "--cpu-budget 0")

    def test_folder_of_another_study(self):
        out = self.tmp / "o"
        code, _, err = run(["table3", "--data", "synthetic", "--out", str(out), "--report-only"])
        self.assertEqual(code, 0, err)
        self.refuse(["table3", "--data", "synthetic", "--out", str(out), "--steps", "99"],
                    "holds another study (budget")
        (self.tmp / "p").mkdir()
        (self.tmp / "p" / "x.txt").write_text("mine")
        code, _, err = run(["table3", "--data", "synthetic", "--out", str(self.tmp / "p"), "--ambiseg", sys.executable])
        self.assertEqual(code, 2)
        self.assertIn("holds no study.json", err)

    def test_crop_override_is_part_of_the_study(self):
        out = self.tmp / "c"
        code, _, err = run(["pp", "--data", "synthetic", "--out", str(out), "--crop", "64", "--report-only"])
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads((out / "study.json").read_text())["identity"]["base"]["crop"], "64")
        code, _, err = run(["pp", "--data", "synthetic", "--out", str(out), "--ambiseg", sys.executable])
        self.assertEqual(code, 2)
        self.assertIn("holds another study (base", err)
        self.refuse(["pp", "--data", "synthetic", "--out", str(self.tmp / "o"), "--crop", "4"], "--crop 4")

    def test_bad_shard_and_seeds(self):
        self.refuse(["table3", "--data", "synthetic", "--out", str(self.tmp / "o"), "--shard", "3/2"], "k must be in 1..N")
        self.refuse(["table3", "--data", "synthetic", "--out", str(self.tmp / "o"), "--seeds", "0,0"], "distinct")


class Plan(unittest.TestCase):
    def plan(self, argv: list[str]) -> list[dict]:
        a = study.parse_args(argv + ["--out", "/nonexistent/o", "--data", "synthetic"])
        s = study.Study(a, study.check_args(a))
        return s.runs()

    def test_table3_has_twelve_cells_and_the_base_is_the_papers_model(self):
        runs = self.plan(["table3", "--seeds", "0", "--dry-run"])
        self.assertEqual(len(runs), 12)
        base = [r for r in runs if r["label"] == "base"]
        self.assertEqual(len(base), 1)
        self.assertEqual((base[0]["options"]["prediction"], base[0]["options"]["weighting"]), ("x", "trunc_snr"))

    def test_experiments_share_runs(self):
        runs = self.plan(["table3,steps,pp", "--seeds", "0,1", "--dry-run"])
        self.assertEqual(len(runs), 24)  # steps and pp evaluate table3's base runs
        base = [r for r in runs if r["label"] == "base"][0]
        self.assertEqual(len(base["evals"]), 13)  # 2 samplers x 6 step counts (one is the default) + the pp sweep

    def test_folds_multiply_runs_and_shards_split_them(self):
        runs = self.plan(["input-scale", "--seeds", "0", "--folds", "3", "--dry-run"])
        self.assertEqual(len(runs), 15)
        code, out, _ = run(["input-scale", "--seeds", "0", "--folds", "3", "--dry-run", "--data", "synthetic",
                            "--out", "/nonexistent/o", "--shard", "2/4"])
        self.assertEqual(code, 0)
        self.assertIn("4 training runs", out)  # runs 1, 5, 9, 13 of 0..14


class Report(unittest.TestCase):
    def test_aggregation_pools_folds_then_averages_seeds(self):
        tmp = Path(tempfile.mkdtemp())
        out = tmp / "o"
        code, _, err = run(["pp", "--data", "synthetic", "--out", str(out), "--folds", "2", "--seeds", "0,1",
                            "--report-only"])
        self.assertEqual(code, 0, err)
        label = "ddpm-10-uniform_t-n4_16-pp0_0.1_0.2_0.3_0.4_0.5_0.6_0.7_0.8_0.9"
        # the pp figure plots GED² after post-processing (fake: raw − 0.01). Seed 0: folds of 10 and
        # 30 images at 0.19 and 0.59 -> 0.49; seed 1: 0.29 -> mean 0.39, sd 0.1414
        for seed, fold, images, ged in ((0, 0, 10, 0.2), (0, 1, 30, 0.6), (1, 0, 10, 0.3), (1, 1, 30, 0.3)):
            fake_eval(out / "runs" / "base" / f"seed-{seed}" / f"fold-{fold}" / "eval" / label,
                      [("model", 4, 0.5, ged, 0.5), ("model", 16, 0.5, ged / 2, 0.5), ("oracle", 4, 0.5, 0.1, 0.6)],
                      images)
        code, _, err = run(["pp", "--data", "synthetic", "--out", str(out), "--folds", "2", "--seeds", "0,1",
                            "--report-only"])
        self.assertEqual(code, 0, err)
        md = (out / "pp.md").read_text()
        self.assertIn("| ged | n=4 | 0.5 | 0.3900 | 0.1414 | 2 |", md)
        self.assertIn("| ged | n=16 | 0.5 | 0.1900 | 0.0707 | 2 |", md)
        png = (out / "pp.png").read_bytes()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertGreater(len(zlib.decompress(png[png.index(b"IDAT") + 4:png.index(b"IEND") - 8])), 1000)
        rows = (out / "scores.csv").read_text().splitlines()
        self.assertEqual(len(rows), 1 + 12)
        self.assertTrue(rows[0].startswith("run,seed,fold,"))

    def test_each_experiment_reads_only_its_own_draws(self):
        # table3 and pp both score (n = 4, r = 0.5) on the base run, from different draws: the
        # pp curve must take every point from its own evaluation, and table3 its cell from its own.
        tmp = Path(tempfile.mkdtemp())
        out = tmp / "o"
        argv = ["table3,pp", "--data", "synthetic", "--out", str(out), "--seeds", "0", "--report-only"]
        self.assertEqual(run(argv)[0], 0)
        sweep = "ddpm-10-uniform_t-n4_16-pp0_0.1_0.2_0.3_0.4_0.5_0.6_0.7_0.8_0.9"
        table = "ddpm-10-uniform_t-n4-pp0.5"
        fake_eval(out / "runs" / "base" / "seed-0" / "eval" / sweep,
                  [("model", 4, r, 0.40, 0.5) for r in (0.0, 0.5)], 10)
        fake_eval(out / "runs" / "base" / "seed-0" / "eval" / table, [("model", 4, 0.5, 0.90, 0.7)], 10)
        code, _, err = run(argv)
        self.assertEqual(code, 0, err)
        pp = (out / "pp.md").read_text()
        self.assertIn("| ged | n=4 | 0.5 | 0.3900 |", pp)  # after pp: 0.40 - 0.01, not the table's draw
        self.assertNotIn("0.8900", pp)
        self.assertEqual(pp.count("| ged | n=4 | 0.5 |"), 1)
        self.assertIn("| x | – / – | 0.900 / 0.700 |", (out / "table3.md").read_text())
        rows = (out / "scores.csv").read_text().splitlines()
        self.assertEqual(len(rows), 1 + 3)  # both draws are kept, each with its evaluation
        self.assertIn(",evaluation,", rows[0])


if __name__ == "__main__":
    unittest.main()
