"""Expected calibration error before and after temperature scaling, per technique and data set.

Each technique trains on ``--shots`` rows per class of a data set's training pool, with ``--val-rows`` other rows
of the pool (a stratified sample: the data's own class balance, as a validation split has) as its validation
rows, and is tested on a fixed stratified sample of held-out rows. The fit
uses ``calibrate=auto`` (a temperature fitted on the validation rows); the uncalibrated probabilities are the
same model's with the temperature undone (``softmax(T * log p)``: dividing logits by T is all the calibration
does), so before and after compare one model. ECE is the top class's over 15 bins (``warmstart.metrics``).

    python benchmarks/calibration.py --data sms-spam,trec,bbc-news --techniques probe,finetune,contrastive
    python benchmarks/calibration.py --techniques probe --val-rows 0   # the probe's cross-validated temperature

Temperature scaling has no default chosen by measurement (only the bounds of T and the 10-row minimum), so there
is no development collection here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import code_version, packaged_split  # benchmarks/common.py, beside this script

from warmstart._io import atomic_write_json
from warmstart.data import few_shot, stratified_split
from warmstart.metrics import calibration
from warmstart.techniques import get_technique


def rows(name: str, shots: int, val_rows: int, test_rows: int, seed: int):
    pool, test = packaged_split(name, test_rows)
    train_idx = few_shot(pool.labels, shots, seed=seed)
    if val_rows == 0:  # no validation rows: the probe cross-validates its temperature, the others fit none
        return pool.subset(train_idx), None, test
    rest = np.setdiff1d(np.arange(len(pool)), train_idx)
    pick = stratified_split([pool.labels[i] for i in rest], 0.0, val_rows / len(rest), seed=seed + 1000).test
    val_idx = rest[np.sort(pick)]
    return pool.subset(train_idx), pool.subset(val_idx), test


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="sms-spam,trec,bbc-news")
    ap.add_argument("--techniques", default="probe,finetune,contrastive")
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--shots", type=int, default=32)
    ap.add_argument(
        "--val-rows", type=int, default=200, help="validation rows (a stratified sample); 0: none"
    )
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--output", default="runs/bench/calibration.json")
    args = ap.parse_args(argv)
    key = json.dumps(
        {
            "code": code_version(),
            **{k: v for k, v in vars(args).items() if k not in ("data", "techniques", "output")},
        },
        sort_keys=True,
    )
    out = Path(args.output)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    results = saved.setdefault(key, {})
    for name in args.data.split(","):
        for seed in range(args.seeds):
            train, val, test = rows(name, args.shots, args.val_rows, args.test_rows, seed)
            for t in args.techniques.split(","):
                cell = f"{name}|{t}|{seed}"
                if cell in results:
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    extra = {"checkpoint_dir": tmp} if t not in ("probe", "contrastive") else {}
                    est = get_technique(t, backbone=args.backbone, seed=seed, progress=False, **extra)
                    est.fit(train, val=val)
                p = est.predict_proba(test)
                temp = est.temperature_
                before = softmax(temp * np.log(np.clip(p, 1e-12, 1))) if temp else p
                labels, classes = list(test.labels), list(est.classes_)
                y = np.searchsorted(est.classes_, np.asarray(labels))
                r = {
                    "temperature": temp,
                    "accuracy": float((p.argmax(1) == y).mean()),
                    "ece_before": calibration(before, labels, classes)["ece"],
                    "ece_after": calibration(p, labels, classes)["ece"],
                    "nll_before": float(-np.log(np.clip(before[np.arange(len(y)), y], 1e-12, 1)).mean()),
                    "nll_after": float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean()),
                }
                results[cell] = r
                atomic_write_json(out, saved)
                print(cell, json.dumps(r), file=sys.stderr, flush=True)
    print(f"keyed by {key}\n")
    print("| data | technique | seeds | accuracy | T | ECE before | ECE after | NLL before | NLL after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.data.split(","):
        for t in args.techniques.split(","):
            rs = [results[f"{name}|{t}|{s}"] for s in range(args.seeds) if f"{name}|{t}|{s}" in results]
            if not rs:
                continue

            def m(k: str, rs: list = rs) -> float:
                return float(np.mean([r[k] for r in rs]))

            print(
                f"| {name} | {t} | {len(rs)} | {m('accuracy'):.3f} | {m('temperature'):.2f} | {m('ece_before'):.3f} | "
                f"{m('ece_after'):.3f} | {m('nll_before'):.3f} | {m('nll_after'):.3f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
