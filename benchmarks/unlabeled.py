"""What unlabelled rows buy: the probe against self-training and domain alignment, on the same rows and seeds.

Labelled rows come from ``--source``; test rows and unlabelled rows from ``--target`` (a stratified test sample
and the rest of that data set, disjoint). With ``--target`` equal to ``--source`` (in domain), the unlabelled
rows are the pool rows a seed did not draw as labelled ones.

    python benchmarks/unlabeled.py --source vader-movie --target vader-amazon --shots 16,64 --seeds 5
    python benchmarks/unlabeled.py --source trec --target trec --shots 16,64 --seeds 5

The ``finetune`` configurations fine-tune the whole backbone instead of probing it; ``finetune+coral`` adds the
Deep CORAL loss against batches of the unlabelled rows (and AdaBN after training, for image CNNs);
``finetune+dann`` a domain critic through a gradient reversal instead (DANN; AdaBN after training too);
``finetune+self_train`` self-trains around fine-tuning (``self_train:finetune``, its default rounds);
``self_train-r3``, ``-p0.8``, ``-p0.3``, ``-r3-p0.8`` self-train the probe with 3 rounds instead of 2, or with
0.8 or 0.3 of each predicted class's rows taken by the last round instead of 0.5; ``words`` is the probe with
TF-IDF of the words beside the embedding (``lexical=tfidf``) and ``words+self_train`` self-trains it (``-r3``,
``-p0.8``, ``-r3-p0.8`` as above; ``probe>words+self_train``: its first round's rows picked and labelled by the
plain probe; ``dapt+words``, ``dapt+words+self_train``: the same on the adapted backbone below). Every
configuration is paired with the plain configuration of its own technique (``probe``, ``finetune``, or ``words``
for ``words+...``).

The ``dapt`` configurations probe a backbone adapted by ``warmstart adapt`` (unsupervised SimCSE) to every
unlabelled row of the target data set (its test sample left out; labels never read), adapted once and kept
under ``runs/bench/adapted/``.

Each row is keyed by the code version (git commit), the data, shots, seed, configuration and backbone, and
appended to ``--output`` (JSON lines); rows already there under the same key are reused, rows of other code never
are. The table pairs every configuration with the plain probe by seed: mean difference and its 95% CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import code_version, keyed_rows, packaged_split  # noqa: E402

# name -> (on the adapted backbone?, self-train?, technique, its parameters)
CONFIGS: dict[str, tuple[bool, bool, str, dict]] = {
    "probe": (False, False, "probe", {}),
    "self_train": (False, True, "probe", {}),
    "mean": (False, False, "probe", {"align": "mean"}),
    "coral": (False, False, "probe", {"align": "coral"}),
    "coral+self_train": (False, True, "probe", {"align": "coral"}),
    "dapt": (True, False, "probe", {}),
    "dapt+coral": (True, False, "probe", {"align": "coral"}),
    "dapt+coral+self_train": (True, True, "probe", {"align": "coral"}),
    # image CNNs: each domain encoded with its own BatchNorm statistics (``align="adabn"``), alone and self-trained
    "adabn": (False, False, "probe", {"align": "adabn"}),
    "adabn+self_train": (False, True, "probe", {"align": "adabn"}),
    "adabn+coral": (False, False, "probe", {"align": "adabn+coral"}),
    "adabn+coral+self_train": (False, True, "probe", {"align": "adabn+coral"}),
    "finetune": (False, False, "finetune", {}),
    "finetune+coral": (False, False, "finetune", {"align": "coral"}),
    "finetune+dann": (False, False, "finetune", {"align": "dann"}),
    "finetune+self_train": (False, True, "finetune", {}),
    # the few-shot default for text (``contrastive``: SetFit-style tuning, then a logistic head), alone and
    # self-trained: each round tunes the encoder again on the labelled and pseudo-labelled rows
    "contrastive": (False, False, "contrastive", {}),
    "contrastive+self_train": (False, True, "contrastive", {}),
    # the same at most 100 tuning steps (300 by default): the labelled rows alone train fewer steps than that
    # at 16 and 64 per class, so only the self-trained rounds, on thousands of rows, change
    "contrastive-s100": (False, False, "contrastive", {"max_steps": 100}),
    "contrastive-s100+self_train": (False, True, "contrastive", {"max_steps": 100}),
    # the words probe on the encoder contrastive tuned on the labelled rows (what a user gets from
    # ``--backbone ARTIFACT/backbone`` after ``fit --technique contrastive``), alone and self-trained: the
    # unlabelled rows teach the head the target's words, on features already tuned to the classes
    "tuned-words": (False, False, "probe", {"lexical": "tfidf", "tuned": True}),
    "tuned-words+self_train": (False, True, "probe", {"lexical": "tfidf", "tuned": True}),
    # self-training's own options (``selftrain.OPTIONS``): more rounds, a larger share of each class's rows
    "self_train-r3": (False, True, "probe", {"self_train_rounds": 3}),
    "self_train-p0.8": (False, True, "probe", {"self_train_portion": 0.8}),
    "self_train-r3-p0.8": (False, True, "probe", {"self_train_rounds": 3, "self_train_portion": 0.8}),
    "self_train-p0.3": (False, True, "probe", {"self_train_portion": 0.3}),
    # the probe with TF-IDF of the words beside the embedding (``lexical=tfidf``), alone and self-trained: the
    # pseudo-labelled target rows can teach it the target domain's words, which a frozen encoder cannot learn
    "words": (False, False, "probe", {"lexical": "tfidf"}),
    "words+self_train": (False, True, "probe", {"lexical": "tfidf"}),
    "words+self_train-r3": (False, True, "probe", {"lexical": "tfidf", "self_train_rounds": 3}),
    # the first round's pseudo-labels from the plain probe (``fit_self_training(labeler=...)``), not from words
    "probe>words+self_train": (False, True, "probe", {"lexical": "tfidf"}),
    "words+self_train-p0.8": (False, True, "probe", {"lexical": "tfidf", "self_train_portion": 0.8}),
    "words+self_train-r3-p0.8": (
        False,
        True,
        "probe",
        {"lexical": "tfidf", "self_train_rounds": 3, "self_train_portion": 0.8},
    ),
    # the words probe on the backbone adapted to the target's unlabelled rows (``warmstart adapt``), alone and
    # self-trained
    "dapt+words": (True, False, "probe", {"lexical": "tfidf"}),
    "dapt+words+self_train": (True, True, "probe", {"lexical": "tfidf"}),
}
# configurations paired with another than their technique alone
BASES = {name: "words" for name in CONFIGS if "words" in name and name != "words"}
BASES["contrastive+self_train"] = "contrastive"
BASES["contrastive-s100+self_train"] = "contrastive-s100"
BASES["tuned-words+self_train"] = "tuned-words"


def base_config(name: str) -> str:
    """The configuration ``name`` is paired with: its technique without unlabelled rows."""
    return BASES.get(name, CONFIGS[name][2])


def run_one(name, labelled, unlabeled, test, backbone, seed) -> dict:
    from warmstart import get_technique
    from warmstart.cost import measure
    from warmstart.evaluate import evaluate
    from warmstart.selftrain import fit_self_training, unlabeled_kw

    _, self_train, technique, params = CONFIGS[name]
    options = {k: v for k, v in params.items() if k.startswith("self_train_")}
    params = {k: v for k, v in params.items() if k not in options}
    with measure() as cost:
        # "tuned": contrastive on the labelled rows first, and its tuned encoder is the backbone
        if params.pop("tuned", False):
            tuner = get_technique("contrastive", backbone=backbone, seed=seed, progress=False)
            backbone = tuner.fit(labelled).backbone_
            params["use_cache"] = False  # the cache knows the pretrained encoder's features, not these
        est = get_technique(technique, backbone=backbone, seed=seed, progress=False, **params)
        if self_train:
            if name.startswith("probe>"):
                options["labeler"] = get_technique("probe", backbone=backbone, seed=seed, progress=False)
                options["labeler"].fit(labelled)
            est = fit_self_training(est, labelled, unlabeled, **options)
        else:
            est.fit(labelled, **unlabeled_kw(est, unlabeled))
    metrics, _ = evaluate(est, test)
    return {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "cpu_s": round(cost.cpu_seconds, 2),
        "rounds": getattr(est, "self_training_", {}).get("rounds"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--shots", default="16,64")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--backbone", default="all-MiniLM-L6-v2")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--output", default="runs/bench/unlabeled.jsonl")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--metric", choices=["accuracy", "macro_f1"], default="accuracy", help="the table's metric"
    )
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from warmstart.data import few_shot
    from warmstart.study_stats import mean_ci, paired

    version, out = code_version(), Path(args.output)
    done = keyed_rows(out)
    source_pool, _ = packaged_split(args.source, args.test_rows)
    target_pool, test = packaged_split(args.target, args.test_rows)
    in_domain = args.source == args.target
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    adapted = None
    if any(CONFIGS[c][0] for c in configs):
        from warmstart.adapt import adapt_backbone

        adapted = str(Path("runs/bench/adapted") / f"{args.backbone}-{args.target}")
        rec = adapt_backbone(args.backbone, target_pool.without_labels(), adapted)
        print(f"adapted backbone: {adapted} ({rec['rows']} rows, {rec['seconds']} s)", file=sys.stderr)
    results: dict[tuple, dict] = {}
    for k in [int(s) for s in args.shots.split(",")]:
        for seed in range(args.seeds):
            idx = few_shot(source_pool.labels, k, seed=seed)
            labelled = source_pool.subset(idx)
            rest = (
                np.setdiff1d(np.arange(len(target_pool)), idx) if in_domain else np.arange(len(target_pool))
            )
            unlabeled = target_pool.subset(rest).without_labels()
            for name in configs:
                params = {"source": args.source, "target": args.target, "shots": k, "seed": seed}
                params.update(config=name, backbone=args.backbone, test_rows=args.test_rows)
                key = json.dumps({"code": version, **params}, sort_keys=True)
                if key not in done:
                    row = {"key": key, "code": version, **params}
                    bb = adapted if CONFIGS[name][0] else args.backbone
                    row.update(run_one(name, labelled, unlabeled, test, bb, seed))
                    row["unlabeled_rows"] = len(unlabeled)
                    with out.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    done[key] = row
                results[(name, k, seed)] = done[key]
                print(f"{name} k={k} seed={seed}: {done[key]['accuracy']:.4f}", file=sys.stderr)
    print(f"\n{args.source} -> {args.target} ({args.backbone}, code {version}); test {len(test)} rows")
    print(
        f"| configuration | k/class | {args.metric} | vs its technique alone, points [95% CI] | CPU s per fit |"
    )
    print("|---|---|---|---|---|")
    for k in [int(s) for s in args.shots.split(",")]:
        for name in configs:
            base = {
                s: results[(base_config(name), k, s)][args.metric]
                for s in range(args.seeds)
                if (base_config(name), k, s) in results
            }
            acc = {s: results[(name, k, s)][args.metric] for s in range(args.seeds)}
            m = mean_ci(list(acc.values()))
            cmp = paired(acc, base) if name != base_config(name) and base else None
            diff = (
                ""
                if not cmp
                else f"{100 * cmp['mean']:+.1f} [{100 * cmp['ci_low']:+.1f}, {100 * cmp['ci_high']:+.1f}]"
                + ("" if cmp["significant"] else " (n.s.)")
            )
            cpu = np.mean([results[(name, k, s)]["cpu_s"] for s in range(args.seeds)])
            print(f"| {name} | {k} | {100 * m['mean']:.1f} ± {100 * m['std']:.1f} | {diff} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
