"""The report of scripts/study.py, from the files alone: OUT/scores.csv (every scored set of
every run present), and per experiment OUT/<name>.md (the table, or the curves' numbers) and
OUT/<name>.png (curves with error bars over seeds).

Aggregation: a seed's figure pools its folds over every test case (each case scored by the
model that did not train on it); the report shows the mean over seeds and their sample
standard deviation.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import study_figure

METRICS = ["ged", "dice", "iou", "hm_iou", "diversity", "ncc", "qubiq"]
NAMES = {"ged": "GED^2", "dice": "dice", "hm_iou": "HM-IoU", "diversity": "diversity", "ncc": "NCC", "qubiq": "QUBIQ",
         "ci": "CI", "ci_authors": "CI (authors)", "iou": "IoU"}


def flat(m: dict | None, suffix: str) -> dict:
    if m is None:
        return {}
    out = {k + suffix: m[k] for k in METRICS}
    out["ci" + suffix] = m["ci"]["score"]
    out["ci_authors" + suffix] = m["ci_authors"]["score"]
    return out


def options_of(label: str, base: dict) -> dict:
    options = dict(base)
    if label != "base":
        for item in label.split(","):
            k, v = item.split("=", 1)
            options[k] = v
    return options


def number_text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def evaluation_label(sampler, steps, spacing, n: list, pp: list) -> str:
    """The folder name of one `ambiseg eval` call (study.eval_points): a draw of its own."""
    return f"{sampler}-{steps}-{spacing}-n{'_'.join(map(str, sorted(set(n))))}-pp{'_'.join(number_text(float(r)) for r in pp)}"


def evaluation_labels(e: dict) -> set[str]:
    ev = e["eval"]
    return {evaluation_label(sampler, steps, spacing, ev["n"], ev["pp"])
            for sampler in ev["sampler"] for steps in ev["steps"] for spacing in ev["spacing"]}


def scan(out: Path, base: dict) -> list[dict]:
    """One row per (run, evaluation, method, n, pp ratio) found under OUT/runs."""
    rows = []
    for ev in sorted((out / "runs").glob("**/eval/*/eval.json")):
        run_dir = ev.parent.parent.parent
        parts = run_dir.relative_to(out / "runs").parts
        label, seed = parts[0], int(parts[1].removeprefix("seed-"))
        fold = int(parts[2].removeprefix("fold-")) if len(parts) > 2 else None
        try:
            doc = json.loads(ev.read_text())
            summary_path = run_dir / "train" / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        except (OSError, json.JSONDecodeError) as e:
            print(f"study: skipping unreadable {ev}: {e}")
            continue
        info = doc["info"]
        for r in doc["results"]:
            row = {"run": label, "seed": seed, "fold": "" if fold is None else fold, **options_of(label, base),
                   "evaluation": ev.parent.name, "method": r["method"], "sampler": info["sampler"], "steps": info["steps"], "spacing": info["spacing"],
                   "n": r["n"], "pp_ratio": "" if r["pp_ratio"] is None else r["pp_ratio"], "images": r["images"],
                   "train_steps": summary.get("steps_done", ""), "train_cpu_seconds": summary.get("train_cpu_seconds", "")}
            row.update(flat(r["raw"], ""))
            row.update(flat(r.get("pp"), "_pp"))
            rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)



def matches(row: dict, e: dict, base: dict) -> bool:
    """Whether a scored set belongs to experiment e: its run is one of e's configurations and
    its evaluation one of e's own `ambiseg eval` calls. Another experiment's call on the same
    run may score the same (n, r) from another draw; mixing the two would put points of
    different draws on one curve."""
    if row["evaluation"] not in evaluation_labels(e):  # its sampler, steps and spacing too
        return False
    for k, v in base.items():
        if k in e["axes"]:
            if row.get(k) not in e["axes"][k]:
                return False
        elif row.get(k) != e["fixed"].get(k, v):
            return False
    for k in e["fixed"]:
        if k not in base and row.get(k) != e["fixed"][k]:
            return False
    for k in e["axes"]:
        if k not in base and row.get(k) not in e["axes"][k]:
            return False
    return row["n"] in e["eval"]["n"] and row["pp_ratio"] in e["eval"]["pp"]


def seed_means(rows: list[dict], key: str) -> dict[int, float]:
    """Per seed, the case-weighted mean over its folds of a metric."""
    per = {}
    for r in rows:
        v = r.get(key)
        if v is None or v == "" or (isinstance(v, float) and math.isnan(v)):
            continue
        s = per.setdefault(r["seed"], [0.0, 0])
        s[0] += v * r["images"]
        s[1] += r["images"]
    return {seed: t / n for seed, (t, n) in per.items() if n}


def summary(rows: list[dict], key: str) -> tuple[float, float, int] | None:
    values = list(seed_means(rows, key).values())
    if not values:
        return None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


def cell(rows: list[dict], key: str) -> str:
    s = summary(rows, key)
    if s is None:
        return "–"
    return f"{s[0]:.3f} ± {s[1]:.3f}" if s[2] > 1 else f"{s[0]:.3f}"


def axis_value(row: dict, key: str):
    if key == "pp":
        return row["pp_ratio"]
    v = row.get(key)
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def reference_rows(all_rows: list[dict], model_rows: list[dict]) -> list[dict]:
    """The oracle (synthetic) or raters rows of the same evaluations."""
    def key(r):
        return r["run"], r["seed"], r["fold"], r.get("evaluation"), r["n"], r["pp_ratio"]
    keys = {key(r) for r in model_rows}
    return [r for r in all_rows if r["method"] in ("oracle", "raters") and key(r) in keys]


def reference_line(refs: list[dict], key: str) -> str:
    if not refs:
        return ""
    s = summary(refs, key)
    return f"{refs[0]['method']} {NAMES.get(key, key)} {s[0]:.3f}" if s else ""


def table_report(e: dict, rows: list[dict], refs: list[dict], seeds: int) -> str:
    r_key, c_key = e["table"]
    r_vals, c_vals = e["axes"][r_key], e["axes"][c_key]
    lines = []
    for metric_pair, title in ((("ged", "dice"), "GED² / dice"), (("ged_pp", "dice_pp"), "GED² / dice after pp"),
                               (("ncc", "ci"), "NCC / CI"), (("hm_iou", "diversity"), "HM-IoU / diversity")):
        if not any(r.get(metric_pair[0]) not in (None, "") for r in rows):
            continue
        lines += [f"**{title}**", "", f"| {r_key} \\ {c_key} | " + " | ".join(c_vals) + " |",
                  "|---|" + "---:|" * len(c_vals)]
        for rv in r_vals:
            cells = []
            for cv in c_vals:
                sel = [r for r in rows if r.get(r_key) == rv and r.get(c_key) == cv]
                cells.append(f"{cell(sel, metric_pair[0])} / {cell(sel, metric_pair[1])}")
            lines.append(f"| {rv} | " + " | ".join(cells) + " |")
        lines.append("")
    ref = reference_line(refs, "ged")
    if ref:
        lines.append(f"Reference at the same n: {ref} (the GED² a perfect sampler of the annotators reaches).")
    return "\n".join(lines) + "\n"


def curves(e: dict, rows: list[dict], refs: list[dict], extra_refs: list[dict], out: Path) -> str:
    x_key, s_key = e["x"], e["series"]
    panels, md = [], []
    for metric, title in (("ged", "ged^2 (lower is better)"), ("dice", "dice (higher is better)")):
        series = {}
        for r in rows:
            if s_key == "pp?":
                variants = [("raw", metric)] + ([("pp", metric + "_pp")] if r.get(metric + "_pp") not in (None, "") else [])
            else:
                name = f"{s_key}={r.get(s_key) if s_key != 'pp' else r['pp_ratio']}" if s_key else "model"
                if s_key == "n":
                    name = f"n={r['n']}"
                variants = [(name, metric + ("_pp" if e.get("postprocessed") else ""))]
            for name, key in variants:
                series.setdefault((name, key), {}).setdefault(axis_value(r, x_key), []).append(r)
        drawn = []
        for (name, key), by_x in series.items():
            pts = []
            for x, sel in sorted(by_x.items(), key=lambda kv: kv[0]):
                s = summary(sel, key)
                if s:
                    pts.append((x, s[0], s[1]))
                    md.append(f"| {metric} | {name} | {x:g} | {s[0]:.4f} | {s[1]:.4f} | {s[2]} |")
            drawn.append({"name": name, "points": pts})
        references = []
        if refs and s_key == "n":  # the oracle's (raters') value differs with n: a line each
            for n, sel in sorted(group(refs, "n").items()):
                if summary(sel, metric):
                    references.append({"name": f"{refs[0]['method']} n={n}", "value": summary(sel, metric)[0]})
        elif refs and summary(refs, metric):
            references.append({"name": refs[0]["method"], "value": summary(refs, metric)[0]})
        references += [r for r in extra_refs if r["metric"] == metric]
        panels.append({"title": title, "series": drawn, "references": references})
    caption = f"{e['name']}: mean over seeds, bars one sd"
    (out / f"{e['name']}.png").write_bytes(study_figure.chart(panels, x_key, e["log_x"], caption))
    return ("| metric | series | " + x_key + " | mean | sd | seeds |\n|---|---|---:|---:|---:|---:|\n" +
            "\n".join(md) + "\n")


def best_of_table(all_rows: list[dict], table3: dict | None, base: dict) -> list[dict]:
    """Table 3's best GED² and best dice, as the dashed lines of the sigmoid-bias figure."""
    if not table3:
        return []
    rows = [r for r in all_rows if r["method"] == "model" and matches(r, table3, base)]
    cells = {}
    for r in rows:
        cells.setdefault(r["run"], []).append(r)
    ged = [summary(v, "ged") for v in cells.values()]
    dice = [summary(v, "dice") for v in cells.values()]
    out = []
    if any(ged):
        out.append({"metric": "ged", "name": "best of table3", "value": min(g[0] for g in ged if g)})
    if any(dice):
        out.append({"metric": "dice", "name": "best of table3", "value": max(d[0] for d in dice if d)})
    return out


def write_report(study, runs) -> list[Path]:
    out = study.out
    marker = json.loads((out / "study.json").read_text())
    base = marker["identity"]["base"]
    all_rows = scan(out, base)  # every scored set, each evaluation's draw its own
    write_csv(out / "scores.csv", all_rows)
    written = [out / "scores.csv"]
    grids = marker["grids"]
    for name, e in grids.items():
        rows = [r for r in all_rows if r["method"] == "model" and matches(r, e, base)]
        refs = reference_rows(all_rows, rows)
        seeds = sorted({r["seed"] for r in rows})
        ident = marker["identity"]
        budget = ident["budget"]
        head = (f"# {name}\n\nData {ident['data']}" + (f", {ident['folds']}-fold cross-validation" if ident["folds"] else "") +
                f"; scale {ident['scale']}; budget " +
                (f"{budget['cpu_seconds']:g} CPU s" if "cpu_seconds" in budget else f"{budget['steps']} steps") +
                f" per run; seeds {', '.join(map(str, seeds)) or 'none yet'} (a figure without ± comes from one seed); "
                f"evaluation: {', '.join(f'{k} {v}' for k, v in e['eval'].items())}.\n\n")
        if e.get("table"):
            body = table_report(e, rows, refs, seeds)
        elif e.get("x"):
            extra = best_of_table(all_rows, grids.get(e.get("reference") or ""), base)
            body = curves(e, rows, refs, extra, out)
            written.append(out / f"{name}.png")
        else:
            body = "| run | GED² | dice |\n|---|---:|---:|\n" + "\n".join(
                f"| {run} | {cell(sel, 'ged')} | {cell(sel, 'dice')} |"
                for run, sel in sorted(group(rows, 'run').items())) + "\n"
        (out / f"{name}.md").write_text(head + body)
        written.append(out / f"{name}.md")
    return written


def group(rows: list[dict], key: str) -> dict:
    g = {}
    for r in rows:
        g.setdefault(r[key], []).append(r)
    return g
