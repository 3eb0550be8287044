#!/usr/bin/env python3
"""Turns a scaling experiment (cluster/scaling.sh) into scaling.csv, scaling.md and scaling.png.

Reads DIR/runs/npN/{metrics.csv,summary.json}. For every rank count, over the train rows after the
first SKIP steps: mean step time and its split (compute = forward and backward, all-reduce including the
wait for the slowest rank, update = the rest), bytes all-reduced per step and rank, tokens/s (input
tokens of the global batch per second), speedup and efficiency against the smallest rank count:
  weak    speedup = tokens/s(N) / tokens/s(base) x base, efficiency = speedup / N
  strong  the same formulas; with a fixed global batch they are the step-time ratios.

Usage: scaling_report.py DIR weak|strong SKIP "command that made the runs"
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

COLUMNS = ["ranks", "accum", "global_batch", "tokens_per_step", "steps_measured", "step_ms", "step_ms_sd",
           "compute_ms", "allreduce_ms", "update_ms", "bytes_reduced_per_step", "tokens_per_s", "speedup",
           "efficiency"]


def measure(run_dir, skip):
    """One CSV row (a dict) for one run."""
    with open(os.path.join(run_dir, "summary.json")) as f:
        summary = json.load(f)
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "train" and int(r["step"]) > skip]
    if not rows:
        sys.exit("scaling_report.py: {} has no train rows after step {}".format(run_dir, skip))
    steps = [float(r["step_ms"]) for r in rows]
    step = statistics.mean(steps)
    compute = statistics.mean(float(r["compute_ms"]) for r in rows)
    reduce_ = statistics.mean(float(r["allreduce_ms"]) for r in rows)
    tokens = summary["global_batch"] * summary["seq_len"]
    ranks = summary["ranks"]
    return {"ranks": ranks, "accum": summary["global_batch"] // (ranks * micro_batch(run_dir)),
            "global_batch": summary["global_batch"], "tokens_per_step": tokens, "steps_measured": len(rows),
            "step_ms": step, "step_ms_sd": statistics.stdev(steps) if len(steps) > 1 else 0.0,
            "compute_ms": compute, "allreduce_ms": reduce_, "update_ms": step - compute - reduce_,
            "bytes_reduced_per_step": int(rows[-1]["bytes_reduced"]),
            "tokens_per_s": tokens / (step / 1e3), "summary": summary}


def micro_batch(run_dir):
    """train.micro_batch from the run's resolved config (config.yaml, written by peftc)."""
    section = None
    with open(os.path.join(run_dir, "config.yaml")) as f:
        for line in f:
            if not line.startswith(" "):
                section = line.strip().rstrip(":")
            elif section == "train" and line.strip().startswith("micro_batch:"):
                return int(line.split(":", 1)[1])
    sys.exit("scaling_report.py: no train.micro_batch in {}/config.yaml".format(run_dir))


def add_speedup(rows):
    base = rows[0]
    for r in rows:
        r["speedup"] = r["tokens_per_s"] / base["tokens_per_s"] * base["ranks"]
        r["efficiency"] = r["speedup"] / r["ranks"]


def write_csv(root, rows):
    with open(os.path.join(root, "scaling.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow([round(r[c], 4) if isinstance(r[c], float) else r[c] for c in COLUMNS])


def plot(root, rows, mode):
    dat = os.path.join(root, "scaling.dat")
    with open(dat, "w") as f:
        for r in rows:
            f.write("{ranks} {tokens_per_s:.3f} {efficiency:.5f} {compute_ms:.3f} {allreduce_ms:.3f} {update_ms:.3f} "
                    "{ideal:.3f}\n".format(ideal=rows[0]["tokens_per_s"] / rows[0]["ranks"] * r["ranks"], **r))
    xt = "set xtics ({})".format(", ".join("'{0}' {0}".format(r["ranks"]) for r in rows))
    s = rows[0]["summary"]
    script = ["set terminal pngcairo size 1500,480 font ',10'" if has_cairo() else "set terminal png size 1500,480",
              "set output '{}'".format(os.path.join(root, "scaling.png")), "set termoption noenhanced",
              "set multiplot layout 1,3 title '{} scaling, {} on {}, {} x {} tokens per rank and micro-batch'".format(
                  mode, s["method"], os.path.basename(s["model"]), s["global_batch"] // s["ranks"], s["seq_len"]),
              "set grid", "set key top left", "set xlabel 'ranks'", "set logscale x 2", xt,
              "set title 'throughput'", "set ylabel 'tokens/s'", "set yrange [0:*]",
              "plot '{0}' using 1:2 with linespoints lw 2 title 'measured', "
              "'{0}' using 1:7 with lines dt 2 title 'linear'".format(dat),
              "set title 'parallel efficiency and all-reduce share'", "set ylabel '% '", "set yrange [0:110]",
              "set key center right",
              "plot '{0}' using 1:($3*100) with linespoints lw 2 pt 7 title 'efficiency', "
              "'{0}' using 1:(100*$5/($4+$5+$6)) with linespoints lw 2 pt 5 title 'all-reduce / step time'".format(dat),
              "unset logscale x", "set xtics auto", "set title 'step time split (rank 0)'", "set ylabel 'ms per step'",
              "set yrange [0:*]", "set style data histograms", "set style histogram rowstacked",
              "set style fill solid 0.8 border -1", "set boxwidth 0.6", "set xlabel 'ranks'",
              "set key below horizontal",
              "plot '{0}' using 4:xtic(1) title 'compute', '' using 5 title 'all-reduce (incl. wait)', "
              "'' using 6 title 'update'".format(dat),
              "unset multiplot"]
    subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True, check=True)
    os.remove(dat)


def write_md(root, rows, mode, skip, command):
    s = rows[0]["summary"]
    lines = ["# Scaling ({})".format(mode), "",
             "Made by `{}` at commit {} on {} ({}).".format(command, commit(), datetime.date.today(), machine()),
             "Job: {} on `{}`, task `{}`, {} trainable values; means over steps {}..{} of each run.".format(
                 s["method"], s["model"], s["task"], s["trainable"], skip + 1, s["steps"]), "",
             "| ranks | global batch | tokens/step | step ms (sd) | compute | all-reduce | update | bytes reduced/step | tokens/s | speedup | efficiency |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append("| {ranks} | {global_batch} | {tokens_per_step} | {step_ms:.1f} ({step_ms_sd:.1f}) | {compute_ms:.1f} | "
                     "{allreduce_ms:.1f} | {update_ms:.1f} | {bytes_reduced_per_step:,} | {tokens_per_s:.1f} | "
                     "{speedup:.2f} | {eff:.1f}% |".format(eff=100 * r["efficiency"], **r))
    lines += ["", "![throughput, efficiency and step time split](scaling.png)"]
    with open(os.path.join(root, "scaling.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    root, mode, skip, command = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    dirs = glob.glob(os.path.join(root, "runs", "np*"))
    if not dirs:
        sys.exit("scaling_report.py: no runs under {}/runs".format(root))
    rows = sorted((measure(d, skip) for d in dirs), key=lambda r: r["ranks"])
    add_speedup(rows)
    write_csv(root, rows)
    write_md(root, rows, mode, skip, command)
    plot(root, rows, mode)
    for r in rows:
        print("scaling: {ranks} rank(s): {tokens_per_s:.1f} tokens/s, step {step_ms:.1f} ms = compute {compute_ms:.1f} + "
              "all-reduce {allreduce_ms:.1f} + update {update_ms:.1f}, {bytes_reduced_per_step} bytes reduced, "
              "efficiency {eff:.1f}%".format(eff=100 * r["efficiency"], **r))
    print("scaling: wrote {0}/scaling.csv, {0}/scaling.md and {0}/scaling.png".format(root))


if __name__ == "__main__":
    main()
