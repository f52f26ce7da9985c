#!/usr/bin/env python3
"""scripts/study.py end to end on the built `ambiseg` (ctest: study_smoke): the input-scale and
pp experiments at the quick scale, then the same command again, which must find every run
and evaluation done and train nothing; then the report's files are checked.

  python3 scripts/test_study_smoke.py --ambiseg build/apps/ambiseg --out /tmp/study_smoke
"""
from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ambiseg", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(HERE / "study.py"), "input-scale,pp", "--data", "synthetic", "--scale", "quick",
           "--seeds", "0", "--jobs", "2", "--out", str(out), "--ambiseg", a.ambiseg]
    first = subprocess.run(cmd, capture_output=True, text=True)
    print(first.stdout, first.stderr)
    if first.returncode != 0:
        return 1
    trained = sorted(out.glob("runs/*/seed-0/train/summary.json"))
    if len(trained) != 5:
        print(f"expected 5 trained runs (b = 0.01, 0.03, 0.1, 0.3, 1), found {len(trained)}")
        return 1
    stamps = {t: t.stat().st_mtime_ns for t in trained}
    again = subprocess.run(cmd, capture_output=True, text=True)
    print(again.stdout, again.stderr)
    if again.returncode != 0 or any(t.stat().st_mtime_ns != s for t, s in stamps.items()) or \
            again.stdout.count("done before") != 5:
        print("the second run must succeed and train nothing")
        return 1
    if len(list(out.glob("runs/*/seed-0/train.log"))) != 5:
        print("one training log per run")
        return 1
    rows = list(csv.DictReader(open(out / "scores.csv")))
    model = [r for r in rows if r["method"] == "model"]
    # input-scale: 5 runs x (n 4, pp 0.5); pp: the base run x n {4, 16} x 10 ratios. The pp
    # sweep's (n 4, pp 0.5) and the input-scale evaluation's are different draws: both kept.
    if len(model) != 5 + 20 or len({r["evaluation"] for r in model}) != 2:
        print(f"expected 25 model rows from 2 evaluations in scores.csv, found {len(model)}")
        return 1
    for name in ("input-scale", "pp"):
        if not (out / f"{name}.png").read_bytes().startswith(b"\x89PNG") or "| ged |" not in (out / f"{name}.md").read_text():
            print(f"{name}: figure or table missing")
            return 1
    print("study smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
