"""warmstart's ``contrastive`` technique against the ``setfit`` library, same splits, same seeds, one process.

For every data set, examples-per-class k and seed, both methods train on exactly the same k rows per class
(``few_shot`` of a fixed training pool) starting from the same pretrained weights (all-MiniLM-L6-v2, or
``--backbone all-mpnet-base-v2``), and are tested on the same held-out rows. Training CPU seconds (``time.process_time``, all threads of this process) cover everything
from loading the pretrained model to a fitted classifier, for both.

    pip install -e ".[bench]"        # setfit, only for this benchmark
    python benchmarks/contrastive_vs_setfit.py --data bbc-news,reuters-r8,sms-spam,vader-movie --shots 8,64 --seeds 5

``--methods setfit`` or ``--methods warmstart`` runs one side only (rows are keyed per method, by the code version
and settings that made them, so the other side's rows can come from another run, e.g. on the other core with
``--threads 1``).

setfit runs with its documented few-shot settings (``num_iterations=20``: 20 positive and 20 negative pairs per
training row, batch 16, one epoch, body lr 2e-5, logistic-regression head), because its default "oversampling"
would draw every unique pair: 122,880 pairs (7,680 steps) for 64 rows of each of TREC's 6 classes. Checkpoint
saving and experiment trackers are switched off for setfit (not for warmstart, which keeps its default
checkpoints): if anything, that favours setfit's time.

Results go to ``--output`` (JSON) after every run, and a rerun skips the runs already there, so an interrupted
benchmark resumes. It prints one row per (data, k) and the overall ratio of CPU time and accuracy difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("TQDM_DISABLE", "1")  # setfit's trainer shows a bar even with show_progress_bar=False

from common import code_version, key_values, packaged_split  # benchmarks/common.py, beside this script

from warmstart._io import atomic_write_json
from warmstart.backbones import get_backbone, minilm_l6_folder, unpack_mpnet
from warmstart.data import few_shot
from warmstart.techniques import get_technique

# the backbones both methods can start from, and where their sentence-transformers folder is (setfit loads it)
BACKBONES = {"all-MiniLM-L6-v2": minilm_l6_folder, "all-mpnet-base-v2": unpack_mpnet}


def run_warmstart(train, test, seed: int, params: dict, backbone: str) -> dict:
    cpu, wall = time.process_time(), time.perf_counter()
    est = get_technique("contrastive", backbone=backbone, seed=seed, progress=False, **params).fit(train)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pred = est.predict(test)
    return {"train_cpu_s": cpu, "train_wall_s": wall, "pred": list(pred), "steps": est.steps_}


def run_setfit(train, test, seed: int, model_path: str) -> dict:
    from datasets import Dataset as HFDataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    with tempfile.TemporaryDirectory() as tmp:
        cpu, wall = time.process_time(), time.perf_counter()
        model = SetFitModel.from_pretrained(model_path)
        args = TrainingArguments(
            output_dir=tmp,
            batch_size=SETFIT_SETTINGS["batch_size"],
            num_epochs=SETFIT_SETTINGS["num_epochs"],
            num_iterations=SETFIT_SETTINGS["num_iterations"],
            seed=seed,
            save_strategy="no",
            report_to="none",
            show_progress_bar=False,
        )
        ds = HFDataset.from_dict({"text": list(train.inputs), "label": list(train.labels)})
        Trainer(model=model, args=args, train_dataset=ds).train()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pred = model.predict(list(test.inputs), batch_size=64, show_progress_bar=False)
    return {"train_cpu_s": cpu, "train_wall_s": wall, "pred": [str(p) for p in pred]}


def method_versions(params: dict, threads: int, backbone: str) -> dict[str, str]:
    """What each method's rows are keyed by: its code version and every setting, so rows from other code or
    other parameters are never silently reused or mixed."""
    import hashlib

    from warmstart.runtime import resolve

    precision = resolve("cpu", params.get("precision", "auto")).precision  # as contrastive resolves it here
    ours = {"code": code_version(), "params": params, "threads": threads, "precision": precision}
    if backbone != "all-MiniLM-L6-v2":  # the first rows, all MiniLM, were keyed without it: they stay valid
        ours["backbone"] = backbone
    out = {"warmstart": json.dumps(ours, sort_keys=True)}
    try:
        import setfit

        out["setfit"] = json.dumps(
            {"setfit": setfit.__version__, "settings": SETFIT_SETTINGS, "threads": threads}
            | ({"backbone": backbone} if backbone != "all-MiniLM-L6-v2" else {}),
            sort_keys=True,
        )
    except ImportError:
        out["setfit"] = "not installed"
    return {m: hashlib.blake2b(v.encode(), digest_size=6).hexdigest() for m, v in out.items()} | {
        f"{m}_described": v for m, v in out.items()
    }


SETFIT_SETTINGS = {"batch_size": 16, "num_epochs": 1, "num_iterations": 20, "precision": "fp32"}


def summarise(
    results: dict, datasets: list[str], shots: list[int], methods: list[str], versions: dict | None = None
) -> int:
    """The table over rows of the given ``versions`` only (None: all rows, whatever code made them)."""
    if versions is not None:
        results = {
            key.rsplit("|", 1)[0]: r
            for key, r in results.items()
            if key.count("|") == 4 and key.rsplit("|", 1)[1] == versions.get(key.split("|")[2])
        }
        print(f"rows of code/settings {', '.join(f'{m} {versions[m]}' for m in methods)} only:")
        for m in methods:
            print(f"  {m}: {versions[f'{m}_described']}")
    else:  # asked to mix: the version part of each key is dropped (rows keyed before versions had none)
        results = {(k.rsplit("|", 1)[0] if k.count("|") == 4 else k): r for k, r in results.items()}
    print(
        "\n| data | k | seeds | warmstart acc | setfit acc | diff | warmstart CPU s | setfit CPU s | CPU ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    diffs, ratios, ours_cpu, theirs_cpu = [], [], 0.0, 0.0
    for d in datasets:
        for k in shots:
            # paired: only the seeds every method has finished, so a partial run compares like with like
            seeds = set.intersection(
                *(
                    {int(key.rsplit("|", 1)[1]) for key in results if key.startswith(f"{d}|{k}|{m}|")}
                    for m in methods
                )
            )
            cell = {m: [results[f"{d}|{k}|{m}|{s}"] for s in sorted(seeds)] for m in methods}
            if not seeds:
                continue
            acc = {m: [r["accuracy"] for r in v] for m, v in cell.items()}
            cpu = {m: [r["train_cpu_s"] for r in v] for m, v in cell.items()}
            fmt = {
                m: f"{statistics.mean(a):.4f} ± {statistics.stdev(a) if len(a) > 1 else 0:.4f}"
                for m, a in acc.items()
            }
            if len(methods) < 2:
                print(
                    f"| {d} | {k} | {len(seeds)} | {fmt[methods[0]]} | | | {statistics.mean(cpu[methods[0]]):.1f} | | |"
                )
                continue
            diff = statistics.mean(acc["warmstart"]) - statistics.mean(acc["setfit"])
            ratio = sum(cpu["warmstart"]) / sum(cpu["setfit"])
            diffs.append(diff)
            ratios.append(ratio)
            ours_cpu += sum(cpu["warmstart"])
            theirs_cpu += sum(cpu["setfit"])
            print(
                f"| {d} | {k} | {len(seeds)} | {fmt['warmstart']} | {fmt['setfit']} | {diff:+.4f} | "
                f"{statistics.mean(cpu['warmstart']):.1f} | {statistics.mean(cpu['setfit']):.1f} | {ratio:.3f} |"
            )
    if diffs:
        print(
            f"\nmean accuracy difference (warmstart - setfit) over {len(diffs)} cells: {statistics.mean(diffs):+.4f}"
        )
        print(
            f"total training CPU: warmstart {ours_cpu:.0f} s, setfit {theirs_cpu:.0f} s, ratio {ours_cpu / theirs_cpu:.3f}"
        )
        print(f"per-cell CPU ratio: mean {statistics.mean(ratios):.3f}, worst {max(ratios):.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="trec,sms-spam,vader-movie")
    ap.add_argument("--shots", default="8,64")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed + seeds - 1 (default 0)"
    )
    ap.add_argument("--methods", default="warmstart,setfit")
    ap.add_argument("--test-rows", type=int, default=1000, help="stratified test sample per data set")
    ap.add_argument(
        "--param", action="append", default=[], help="warmstart contrastive KEY=VALUE (repeatable)"
    )
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2", choices=sorted(BACKBONES))
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--output", default="runs/bench/contrastive_vs_setfit.json")
    ap.add_argument("--summary-only", action="store_true", help="print the table from --output and exit")
    ap.add_argument(
        "--mix-versions",
        action="store_true",
        help="summarise rows from any code version or settings (default: "
        "only this code's and these settings')",
    )
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    datasets, shots = args.data.split(","), [int(k) for k in args.shots.split(",")]
    methods = args.methods.split(",")
    params = key_values(args.param)
    out = Path(args.output)
    results: dict = json.loads(out.read_text())["runs"] if out.is_file() else {}
    versions = method_versions(params, args.threads, args.backbone)
    if args.summary_only:
        return summarise(results, datasets, shots, methods, None if args.mix_versions else versions)
    model_path = str(BACKBONES[args.backbone]())
    quiet()
    warm_up(methods, model_path, args.backbone)
    data = {d: packaged_split(d, args.test_rows, test_size=0.3) for d in datasets}
    # cheapest cells first, seeds in the outer loop: an interrupted run has every data set at some seeds
    for k in sorted(shots):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for d in datasets:
                pool, test = data[d]
                train = pool.subset(few_shot(pool.labels, k, seed=seed))
                for m in methods:
                    key = f"{d}|{k}|{m}|{seed}|{versions[m]}"
                    if key in results:
                        continue
                    if m == "warmstart":
                        r = run_warmstart(train, test, seed, params, args.backbone)
                    else:
                        r = run_setfit(train, test, seed, model_path)
                    pred = np.asarray(r.pop("pred"))
                    r.update(accuracy=float((pred == np.asarray(test.labels)).mean()), n_train=len(train))
                    r["n_test"] = len(test)
                    results = save_run(
                        out, key, r, {"params": params, "threads": args.threads, "versions": versions}
                    )
                    print(
                        f"{key}: acc {r['accuracy']:.4f}  train CPU {r['train_cpu_s']:.1f}s "
                        f"wall {r['train_wall_s']:.1f}s",
                        file=sys.stderr,
                        flush=True,
                    )
    return summarise(results, datasets, shots, methods, None if args.mix_versions else versions)


def save_run(out: Path, key: str, run: dict, about: dict) -> dict:
    """Add one run to ``out`` under a lock, merged with the runs other processes wrote since this one read the
    file (two runs can share a file, e.g. one per core); returns every run now in it."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runs = json.loads(out.read_text())["runs"] if out.is_file() else {}
        runs[key] = run
        atomic_write_json(out, about | {"runs": runs})
    return runs


def warm_up(methods: list[str], model_path: str, backbone: str) -> None:
    """Import each library and load its model once, untimed, so neither method pays the imports."""
    get_backbone(backbone)
    if "setfit" in methods:
        from setfit import SetFitModel

        SetFitModel.from_pretrained(model_path)


def quiet() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("setfit", "sentence_transformers", "transformers", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from setfit import logging as sf_logging

        sf_logging.set_verbosity_error()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
