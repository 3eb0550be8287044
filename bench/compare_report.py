#!/usr/bin/env python3
"""Turns a method-comparison study (bench/compare_methods.sh) into compare.md and compare.png.

Reads DIR/runs/<name>/seed<N>/summary.json and metrics.csv. For every method: trainable parameters,
held-out loss at step 10 and at the end, exact match before and after, wall time, each as the mean
and sample standard deviation over the seeds that ran. The plot shows held-out loss against step per
comparison (mean over seeds, bars from the lowest to the highest seed).

Usage: compare_report.py DIR "command that made the study"
Standard library only, plus gnuplot for the PNG.
"""
import csv
import datetime
import glob
import json
import os
import statistics
import subprocess
import sys

from report_util import commit, has_cairo, machine

GROUPS = [
    ("budget", "Matched budget: LoRA vs RoSA vs SpA, full fine-tuning as the ceiling",
     ["lora", "rosa", "spa", "full"]),
    ("3matrix", "Three-matrix LoRA and PiSSA: LoRA vs SLoRA vs NLoRA vs IntTune vs PiSSA (r=8)",
     ["lora", "slora", "nlora", "inttune", "pissa"]),
    ("eigen", "EigenLoRAx (basis from the arith and sql LoRAs) vs LoRA", ["lora", "eigenlora"]),
    ("gmt", "GMT (mask ratio 0.2 / 0.5 / 0.8) vs full fine-tuning", ["full", "gmt_0.2", "gmt_0.5", "gmt_0.8"]),
]
LABELS = {"lora": "LoRA r=8", "rosa": "RoSA r=4 + 1.15%", "spa": "SpA 2.3%", "full": "Full FT",
          "slora": "SLoRA r=8", "nlora": "NLoRA r=8", "inttune": "IntTune r=8", "pissa": "PiSSA r=8",
          "eigenlora": "EigenLoRAx K=32",
          "gmt_0.2": "GMT ratio 0.2", "gmt_0.5": "GMT ratio 0.5", "gmt_0.8": "GMT ratio 0.8"}


def load_runs(root):
    """{name: [(summary, {step: held-out loss})...]} for every finished run."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(root, "runs", "*", "seed*", "summary.json"))):
        d = os.path.dirname(path)
        with open(path) as f:
            summary = json.load(f)
        curve = {}
        with open(os.path.join(d, "metrics.csv")) as f:
            for row in csv.DictReader(f):
                if row["kind"] == "eval":
                    curve[int(row["step"])] = float(row["loss"])
        name = os.path.basename(os.path.dirname(d))
        if not name.startswith("basis_"):  # the EigenLoRAx basis' source LoRAs are a means, not a result
            runs.setdefault(name, []).append((summary, curve))
    return runs


def stat(values, fmt):
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return fmt.format(mean)
    return (fmt + " ± " + fmt).format(mean, statistics.stdev(values))


def loss_at(curve, step):
    """The held-out loss of the first evaluation at or after `step` (NaN when there is none)."""
    later = [s for s in curve if s >= step]
    return curve[min(later)] if later else float("nan")


def row(name, seeds, labels=LABELS, early=10):
    s0 = seeds[0][0]
    em = [s["exact_match_after"] * 100 for s, _ in seeds if s["exact_match_after"] is not None]
    em0 = [s["exact_match_before"] * 100 for s, _ in seeds if s["exact_match_before"] is not None]
    before = "{:.1f}%".format(statistics.fmean(em0)) if em0 else "-"
    return "| {} | {:,} | {} | {} | {} | {} → {} | {} |".format(
        labels.get(name, name), int(s0["trainable"]), len(seeds),
        stat([loss_at(c, early) for _, c in seeds], "{:.4f}"),
        stat([s["eval_loss_last"] for s, _ in seeds], "{:.4f}"),
        before, stat(em, "{:.1f}%"),
        stat([s["wall_seconds"] for s, _ in seeds], "{:.0f}"))


def write_curves(root, runs):
    """One gnuplot data file per method: step, mean, lowest, highest held-out loss over the seeds."""
    os.makedirs(os.path.join(root, "curves"), exist_ok=True)
    for name, seeds in runs.items():
        steps = sorted(set.intersection(*[set(c) for _, c in seeds]))
        with open(os.path.join(root, "curves", name + ".dat"), "w") as f:
            for st in steps:
                v = [c[st] for _, c in seeds]
                f.write("{} {:.6g} {:.6g} {:.6g}\n".format(st, statistics.fmean(v), min(v), max(v)))


def plot(root, runs, spec):
    rows = (len(spec["groups"]) + 1) // 2
    script = ["set terminal pngcairo size 1400,{} font ',10'".format(500 * rows) if has_cairo()
              else "set terminal png size 1400,{}".format(500 * rows),
              "set output '{}'".format(os.path.join(root, spec["stem"] + ".png")),
              "set multiplot layout {},2 title '{}: held-out loss vs step "
              "(mean over seeds, bars = lowest/highest seed)'".format(rows, spec["plot_title"]),
              "set termoption noenhanced", "set logscale y", "set xlabel 'optimizer step'", "set ylabel 'held-out loss'", "set key top right",
              "set grid"]
    for _, title, names in spec["groups"]:
        present = [n for n in names if n in runs]
        script.append("set title '{}'".format(title.replace("'", "")))
        if not present:
            script.append("unset key; plot 1/0 notitle; set key top right")
            continue
        parts = []
        for n in present:
            dat = os.path.join(root, "curves", n + ".dat")
            parts.append("'{0}' using 1:2:3:4 with yerrorlines title '{1} ({2} seed{3})'".format(
                dat, spec["labels"].get(n, n), len(runs[n]), "s" if len(runs[n]) > 1 else ""))
        script.append("plot " + ", ".join(parts))
    script.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)


SPEC = {"groups": GROUPS, "labels": LABELS, "title": "Method comparison", "stem": "compare",
        "plot_title": "SmolLM2-135M-Instruct, records task"}


def report(spec, root, command):
    """spec: groups [(key, title, [names])], labels {name: label}, title, stem (of .md/.png), plot_title, and
    optionally early_step (the early held-out loss column: the first evaluation at or after it; 10)."""
    runs = load_runs(root)
    if not runs:
        sys.exit("{}: no finished runs (summary.json) under {}/runs".format(spec["stem"], root))
    any_run = next(iter(runs.values()))[0][0]
    lines = ["# " + spec["title"], "",
             "Made by `{}` at commit {} on {} ({}).".format(command, commit(), datetime.date.today(), machine()),
             "Model {}, task `{}`, {} steps, global batch {} x {} tokens on {} ranks; every number is the mean "
             "± sample standard deviation over the seeds (n).".format(
                 any_run["model"], any_run["task"], any_run["steps"], any_run["global_batch"], any_run["seq_len"],
                 any_run["ranks"]), ""]
    for _, title, names in spec["groups"]:
        early = spec.get("early_step", 10)
        lines += ["## " + title, "",
                  "| method | trainable | n | held-out loss @{} | held-out loss, end | exact match before → after | "
                  "wall s |".format(early), "|---|---:|---:|---:|---:|---:|---:|"]
        lines += [row(n, runs[n], spec["labels"], early) for n in names if n in runs]
        lines.append("")
    lines.append("![held-out loss vs step]({}.png)".format(spec["stem"]))
    with open(os.path.join(root, spec["stem"] + ".md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    write_curves(root, runs)
    plot(root, runs, spec)
    print("{0}: wrote {1}/{0}.md and {1}/{0}.png".format(spec["stem"], root))


def main():
    report(SPEC, sys.argv[1], sys.argv[2])


if __name__ == "__main__":
    main()
