#!/usr/bin/env python3
"""Builds the text corpus and the tokenizer of the small pretrained Mamba (tools/pretrain-mamba.sh).

Corpus: every fortune of Debian's `fortunes` package (BSD-licensed quotations, /usr/share/games/fortunes:
the files that have a .dat index, entries separated by '%' lines), one JSONL {"text"} document each, in
a fixed order shuffled by a seeded generator; the last --eval-percent go to a held-out file.
Tokenizer: a byte-level BPE (GPT-2's pre-tokenizer, no prefix space: what peftc reads) trained with the
`tokenizers` library on the training documents only, with <|endoftext|> as id 0 (BOS/EOS/pad).

    python3 tools/mamba_corpus.py OUTDIR [--vocab 4096] [--eval-percent 5] [--seed 1]
"""
import argparse
import glob
import hashlib
import json
import os
import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

FORTUNES = "/usr/share/games/fortunes"


def fortunes():
    docs = []
    for dat in sorted(glob.glob(os.path.join(FORTUNES, "*.dat"))):
        with open(dat[:-4], encoding="utf-8", errors="replace") as f:
            entry = []
            for line in f:
                if line.rstrip("\n") == "%":
                    if entry:
                        docs.append("".join(entry).strip())
                    entry = []
                else:
                    entry.append(line)
            if entry:
                docs.append("".join(entry).strip())
    return [d for d in docs if d]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--eval-percent", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    docs = fortunes()
    if not docs:
        raise SystemExit(f"no fortunes under {FORTUNES}: install Debian's fortunes package")
    random.Random(a.seed).shuffle(docs)
    n_eval = max(1, len(docs) * a.eval_percent // 100)
    splits = {"train": docs[n_eval:], "eval": docs[:n_eval]}
    for name, part in splits.items():
        with open(os.path.join(a.out, f"{name}.jsonl"), "w") as f:
            for d in part:
                f.write(json.dumps({"text": d}) + "\n")

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(splits["train"], trainer=trainer)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "add_bos_token": False}, f, indent=1)
    chars = sum(len(d) for d in splits["train"])
    digest = hashlib.sha256(open(os.path.join(a.out, "train.jsonl"), "rb").read()).hexdigest()[:16]
    print(f"corpus: {len(splits['train'])} train / {n_eval} held-out fortunes, {chars} train characters, "
          f"train.jsonl sha256 {digest}; tokenizer: {tok.get_vocab_size()} tokens")


if __name__ == "__main__":
    main()
