"""Choosing the image training recipe on development data: named settings side by side on the same splits.

The recipe's defaults (augmentation, learning rates, epochs) are chosen here, on data sets that the reported
studies never use (the development collection: ``mnist-5k``); the studies in docs/studies.md then measure them on
the evaluation collection (Fashion-MNIST, scikit-learn digits).

    python benchmarks/image_recipe.py --data mnist-5k --shots 32,100 --seeds 0 \\
        --configs old,trivial,trivial-lr1e-3 --param hflip=false

Each row is keyed by the code version (git commit), the data, shots, seed and every parameter, and appended to
``--output`` (JSON lines); rows already there under the same key are reused, rows of other code never are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import code_version, keyed_rows  # noqa: E402

# name -> (technique, parameters); the loop's other parameters keep their defaults of the code being measured
CONFIGS: dict[str, tuple[str, dict]] = {
    "probe": ("probe", {}),
    "old": ("finetune", {"augment": "none", "lr": 2e-4, "epochs": 4}),
    "trivial": ("finetune", {"augment": "trivial", "lr": 2e-4, "epochs": 4}),
    "trivial-lr1e-3": ("finetune", {"augment": "trivial", "lr": 1e-3, "epochs": 4}),
    "trivial-lr5e-4-e8": ("finetune", {"augment": "trivial", "lr": 5e-4, "epochs": 8}),
    "light-lr5e-4-e8": ("finetune", {"augment": "light", "lr": 5e-4, "epochs": 8}),
    "trivial-lr5e-4-e8-ls": (
        "finetune",
        {"augment": "trivial", "lr": 5e-4, "epochs": 8, "label_smoothing": 0.1},
    ),
    "trivial-lr2e-3": ("finetune", {"augment": "trivial", "lr": 2e-3, "epochs": 4}),
    "trivial-lr1e-3-ls": (
        "finetune",
        {"augment": "trivial", "lr": 1e-3, "epochs": 4, "label_smoothing": 0.1},
    ),
    "trivial-lr1e-3-decay0.8": ("finetune", {"augment": "trivial", "lr": 1e-3, "epochs": 4, "lr_decay": 0.8}),
    "light-lr1e-3": ("finetune", {"augment": "light", "lr": 1e-3, "epochs": 4}),
    "trivial-lr1e-3-cutmix": ("finetune", {"augment": "trivial", "lr": 1e-3, "epochs": 4, "cutmix": 0.5}),
    "lp_ft-trivial-lr1e-3": ("lp_ft", {"augment": "trivial", "lr": 1e-3, "epochs": 4}),
    "lp_ft-trivial-lr5e-4": ("lp_ft", {"augment": "trivial", "lr": 5e-4, "epochs": 4}),
    "lp_ft-light-lr1e-3": ("lp_ft", {"augment": "light", "lr": 1e-3, "epochs": 4}),
    "lp_ft-light-lr5e-4": ("lp_ft", {"augment": "light", "lr": 5e-4, "epochs": 4}),
    "default": ("finetune", {}),
    "lp_ft": ("lp_ft", {}),
    "lp_ft-none": ("lp_ft", {"augment": "none"}),
    "scratch": ("scratch", {}),
    "scratch-none": ("scratch", {"augment": "none"}),
    "scratch-e20": ("scratch", {"epochs": 20}),
    "e10": ("finetune", {"epochs": 10}),
    "crop0.6": ("finetune", {"crop_scale": 0.6}),
    "e10-crop0.6": ("finetune", {"epochs": 10, "crop_scale": 0.6}),
    "lp_ft-e10": ("lp_ft", {"epochs": 10}),
    "lp_ft-e10-crop0.6": ("lp_ft", {"epochs": 10, "crop_scale": 0.6}),
}


def parse_value(v: str):
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def pool_and_test(pk, test_rows: int, held_out: float | None = None):
    """The training pool and the test rows of a packaged data set: its test split, a stratified sample of at most
    ``test_rows``; without one, a stratified ``held_out`` share of its rows (default: ``test_rows`` of them)."""
    from warmstart.data import stratified_split

    if pk.test is not None:
        test = pk.test
        if test_rows < len(test):
            frac = test_rows / len(test)
            test = test.subset(stratified_split(test.labels, val_size=0.0, test_size=frac, seed=0).test)
        return pk.train, test
    frac = held_out if held_out is not None else test_rows / len(pk.train)
    split = stratified_split(pk.train.labels, val_size=0.0, test_size=frac, seed=0)
    return pk.train.subset(split.train), pk.train.subset(split.test)


def main(argv: list[str] | None = None) -> int:
    from warmstart.data import few_shot, load_packaged
    from warmstart.techniques import get_technique

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="mnist-5k")
    ap.add_argument("--backbone", default="efficientnet-lite0:image_size=128")
    ap.add_argument("--shots", default="32,100")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--configs", default="probe,old,default")
    ap.add_argument("--param", action="append", default=[], help="KEY=VALUE for every trained config")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--output", default="runs/bench/image_recipe.jsonl")
    args = ap.parse_args(argv)
    extra = dict(kv.split("=", 1) for kv in args.param)
    extra = {k: parse_value(v) for k, v in extra.items()}

    pool, test = pool_and_test(load_packaged(args.data), args.test_rows)
    out = Path(args.output)
    done = keyed_rows(out)
    version = code_version()
    print(f"code {version}; {args.data}: pool {len(pool)}, test {len(test)}", file=sys.stderr)
    rows = []
    for shots in [int(s) for s in args.shots.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            train = pool.subset(few_shot(pool.labels, shots, seed=seed))
            for name in args.configs.split(","):
                technique, params = CONFIGS[name]
                params = {**params, **({} if technique == "probe" else extra)}
                desc = {
                    "code": version,
                    "data": args.data,
                    "backbone": args.backbone,
                    "shots": shots,
                    "seed": seed,
                    "technique": technique,
                    "params": params,
                    "test_rows": len(test),
                }
                key = hashlib.blake2b(json.dumps(desc, sort_keys=True).encode(), digest_size=8).hexdigest()
                if key in done and not version.endswith("-dirty"):
                    rows.append(done[key])
                    continue
                est = get_technique(technique, backbone=args.backbone, seed=seed, progress=False, **params)
                cpu, wall = time.process_time(), time.perf_counter()
                est.fit(train)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                acc = float((est.predict(test) == test.labels).mean())
                row = {
                    "key": key,
                    **desc,
                    "config": name,
                    "accuracy": acc,
                    "train_cpu_s": round(cpu, 1),
                    "train_wall_s": round(wall, 1),
                    "train_rows_per_s": getattr(est, "train_rows_per_s_", None),
                }
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append(row)
                print(f"{args.data} {shots}/class seed {seed} {name}: {acc:.4f} ({wall:.0f} s)", flush=True)
    print("\n| shots | config | seeds | accuracy | train wall s |\n|---|---|---|---|---|")
    for shots in sorted({r["shots"] for r in rows}):
        for name in args.configs.split(","):
            sel = [r for r in rows if r["shots"] == shots and r["config"] == name]
            if sel:
                acc = sum(r["accuracy"] for r in sel) / len(sel)
                wall = sum(r["train_wall_s"] for r in sel) / len(sel)
                print(f"| {shots} | {name} | {len(sel)} | {acc:.4f} | {wall:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
