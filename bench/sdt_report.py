#!/usr/bin/env python3
"""Turns the SDT study (bench/sdt_study.sh) into sdt.md and sdt.png, with compare_report.py's tables and
curves: per configuration the trainable count, held-out loss at step 50 and at the end, exact match and
wall time, mean ± sample standard deviation over the seeds.

Usage: sdt_report.py DIR "command that made the study"
"""
import sys

from compare_report import report

LABELS = {
    "lora_oxd_r2": "LoRA r=2 on out+x+dt_proj",
    "lora_ox_r3": "LoRA r=3 on out+x_proj",
    "lora_od_r5": "LoRA r=5 on out+dt_proj",
    "lora_ssm": "LoRA on the SSM module (dt_proj) r=8",
    "sdt": "SDT alone (f_ch 0.99, f_st 0.9)",
    "sdlora_0.75": "SDLoRA f_st 0.75",
    "sdlora_0.9": "SDLoRA f_st 0.9",
    "sdlora_0.95": "SDLoRA f_st 0.95",
    "full": "Full fine-tuning",
}
SPEC = {
    "groups": [
        ("linear", "LoRA on the linear projections (the paper's parameter-matched baselines) vs SDLoRA",
         ["lora_oxd_r2", "lora_ox_r3", "lora_od_r5", "sdlora_0.75", "sdlora_0.9", "sdlora_0.95"]),
        ("ssm", "Tuning the SSM: LoRA on dt_proj vs SDT alone vs SDLoRA, full fine-tuning as the ceiling",
         ["lora_ssm", "sdt", "sdlora_0.9", "full"]),
    ],
    "labels": LABELS,
    "title": "SDT / SDLoRA study on the fortunes Mamba",
    "stem": "sdt",
    "plot_title": "Mamba 2.8M (fortunes), records task",
    "early_step": 50,
}

if __name__ == "__main__":
    report(SPEC, sys.argv[1], sys.argv[2])
