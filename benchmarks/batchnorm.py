"""BatchNorm statistics when fine-tuning an image CNN on a few rows: re-estimated on them, or the pretrained ones.

For each data set, label count and seed, ``--technique`` (with its defaults, no validation rows) is fitted on
``--shots`` rows per class drawn from the packaged training split by ``few_shot``, once per ``--batchnorm`` value,
and scored on a fixed stratified sample of held-out rows (the same for every seed and code version). Each row
records:

- ``accuracy`` and ``macro_f1`` at the precision the artifact predicts in (``auto``: bf16 where the CPU has it);
- ``accuracy_fp32`` and ``agreement``: the same model predicting in fp32 (what the ONNX export computes), and
  the share of test rows whose top class is the same in both;
- ``noise_flips``: the share of test rows whose top class changes when every pixel gets Gaussian noise of
  ``--noise`` grey levels (rounded, clipped to 0..255), in fp32: how fragile the model is to what a camera or a
  JPEG encoder changes;
- ``fit_cpu_s``: CPU seconds of the fit.

    python benchmarks/batchnorm.py --data mnist-5k --shots 8,16,32 --seeds 5 --technique lp_ft \\
        --backbone efficientnet-lite0:image_size=64 --batchnorm recalibrate,pretrained --threads 1

Rows are keyed by the code version (git commit) and every setting, appended to ``--output`` (JSON lines); a rerun
skips the rows already there. ``--summary-only`` prints each value against ``recalibrate`` (paired by seed) for
the rows of ``--code`` (default: this code version). ``--technique probe --batchnorm none`` adds the probe's
rows for reference (its backbone is frozen, so its statistics are the pretrained ones).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import key_values, keyed_rows, packaged_split, rows_version, summary_options  # noqa: E402

REFERENCE = "recalibrate"
METRICS = ("accuracy", "accuracy_fp32", "agreement", "noise_flips")


def noisy(images: np.ndarray, sd: float, seed: int) -> np.ndarray:
    """``images`` (uint8) with Gaussian noise of ``sd`` grey levels, rounded and clipped."""
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(images + rng.normal(0.0, sd, images.shape)), 0, 255).astype(np.uint8)


def run_one(split: tuple, shots: int, seed: int, batchnorm: str, args) -> dict:
    """One fit on ``shots`` rows per class of ``split`` (``packaged_split``'s pool and test rows), scored."""
    from warmstart.data import few_shot, from_arrays
    from warmstart.techniques import get_technique

    pool, test = split
    train = pool.subset(np.sort(few_shot(pool.labels, shots, seed=seed)))
    params = key_values(args.param)
    if batchnorm != "none":  # "none": a technique without it (the probe, for reference)
        params["batchnorm"] = batchnorm
    est = get_technique(args.technique, backbone=args.backbone, seed=seed, progress=False, **params)
    cpu = time.process_time()
    est.fit(train)
    cpu = time.process_time() - cpu
    y = np.asarray(test.labels)
    pred = est.predict(test)
    from warmstart.runtime import resolve

    precision = resolve(est.device, est.precision).precision
    est.set_params(precision="fp32")  # predicts as the ONNX export computes, the weights as trained
    pred32 = est.predict(test)
    shaken = est.predict(from_arrays(noisy(np.asarray(test.inputs), args.noise, seed=1000 + seed)))
    return {
        "accuracy": float((pred == y).mean()),
        "macro_f1": _macro_f1(y, pred),
        "precision": precision,
        "accuracy_fp32": float((pred32 == y).mean()),
        "agreement": float((pred == pred32).mean()),
        "noise_flips": float((shaken != pred32).mean()),
        "fit_cpu_s": round(cpu, 2),
    }


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="macro"))


def summarise(rows: dict, code: str) -> None:
    """Each (data, shots, technique) cell of ``code``'s rows: every value's means, and its paired difference
    from ``recalibrate`` on the same seeds; then the differences pooled over cells."""
    cells: dict = {}
    for r in rows.values():
        if r["code"] == code:
            s = json.loads(r["setting"])
            cell = cells.setdefault((r["data"], r["shots"], s["technique"]), {})
            label = s["batchnorm"] + "".join(f",{k}={v}" for k, v in sorted(s.get("params", {}).items()))
            cell.setdefault(label, {})[r["seed"]] = r
    pooled: dict = {}
    print(f"code {code}; accuracy and the rest in %, differences in points against {REFERENCE}")
    for (data, shots, technique), by_value in sorted(cells.items()):
        ref = by_value.get(REFERENCE, {})
        for value, by_seed in sorted(by_value.items()):
            means = {m: 100 * statistics.mean(r[m] for r in by_seed.values()) for m in METRICS}
            cpu = statistics.mean(r["fit_cpu_s"] for r in by_seed.values())
            line = f"{data:13s} {shots:3d}/class {technique:8s} {value:20s} n={len(by_seed)} " + " ".join(
                f"{m} {v:6.2f}" for m, v in means.items()
            )
            line += f"  CPU s {cpu:5.1f}"
            if value != REFERENCE and ref:
                d = [100 * (r["accuracy"] - ref[s]["accuracy"]) for s, r in by_seed.items() if s in ref]
                pooled.setdefault((technique, value), []).extend(d)
                if d:
                    line += f"  accuracy diff {statistics.mean(d):+.2f} ({_ahead(d)})"
            print(line)
    for (technique, value), d in sorted(pooled.items()):
        if len(d) > 1:
            m, half = statistics.mean(d), 1.96 * statistics.stdev(d) / len(d) ** 0.5
            print(
                f"{technique} {value}: accuracy {m:+.2f} points [{m - half:+.2f}, {m + half:+.2f}] over "
                f"{len(d)} paired runs ({_ahead(d)} ahead/level/behind)"
            )


def _ahead(d: list[float]) -> str:
    return f"{sum(x > 0 for x in d)}/{sum(x == 0 for x in d)}/{sum(x < 0 for x in d)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist-5k", help="packaged image data sets, comma-separated")
    ap.add_argument("--shots", default="16", help="labelled rows per class, comma-separated")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--technique", default="lp_ft")
    ap.add_argument("--backbone", default="efficientnet-lite0:image_size=64")
    ap.add_argument(
        "--batchnorm", default="recalibrate,pretrained", help="values of the technique's batchnorm"
    )
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE for the technique")
    ap.add_argument("--noise", type=float, default=2.0, help="grey levels of Gaussian pixel noise")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--output", default="runs/bench/batchnorm.jsonl")
    summary_options(ap)
    args = ap.parse_args()
    code = rows_version(ap, args)
    out = Path(args.output)
    rows = keyed_rows(out)
    if args.summary_only:
        return summarise(rows, code)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    settings = {
        value: json.dumps(
            {
                "technique": args.technique,
                "backbone": args.backbone,
                "batchnorm": value,
                **({"params": key_values(args.param)} if args.param else {}),
                "noise": args.noise,
                "test_rows": args.test_rows,
            },
            sort_keys=True,
        )
        for value in args.batchnorm.split(",")
    }
    for data in args.data.split(","):
        split = None  # the data set's pool and test rows, loaded once it has a row to run
        for shots in map(int, args.shots.split(",")):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for value, setting in settings.items():
                    key = json.dumps([code, data, shots, seed, setting])
                    if key in rows:
                        continue
                    split = split or packaged_split(data, args.test_rows)
                    r = run_one(split, shots, seed, value, args)
                    row = {"key": key, "code": code, "data": data, "shots": shots, "seed": seed}
                    row.update(setting=setting, **r)
                    with out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    rows[key] = row
                    print(
                        f"{data} {shots}/class seed {seed} {value}: accuracy {r['accuracy']:.4f} "
                        f"(fp32 {r['accuracy_fp32']:.4f}, agreement {r['agreement']:.3f}, noise flips "
                        f"{r['noise_flips']:.3f})  {r['fit_cpu_s']:.0f} CPU s",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
