"""Distillation: a fine-tuned teacher against its static and small-transformer students, and model2vec's own path.

Per data set and seed: ``--shots`` labelled rows per class from the training pool; the teacher (``finetune`` on
``--teacher``) trains on them; up to ``--unlabeled`` other pool rows (their labels dropped) form, with the
labelled rows, the transfer set the students learn from; everything is tested on the same fixed test rows, and
throughput (rows/s over the test rows, and one-row latency) is measured in this process for every model.

Students (``--students``, comma-separated names of ``STUDENTS``; a student whose options name no technique is
fine-tuned on the soft targets, ``--technique finetune``, whatever ``warmstart distill`` does by default):
  static ... the static student fine-tuned: distilled from the teacher's own fine-tuned encoder, then its table
             and a hidden layer trained on the teacher's soft targets (``warmstart distill``'s default static
             student until it became probe + pieces, ``static-probe-pieces``); variants set its learning rate,
             temperature and hard-label weight;
  static-h512, static-h256, static-h0  the static student with a hidden layer of 512 or 256 units before its
             head (model2vec's classifier has one of 512), or none (the default before 512 was chosen);
             static-h1024: 1,024 units; static-pca-none: the teacher's vectors at their full width, no PCA;
  static-len256, static-len512  the static student reading at most 256 or 512 tokens of each text (model2vec's
             classifier reads 512, as the static student does by default since 87de6f9; before, it read as
             many as the teacher, 256 for all-MiniLM-L6-v2); static-len256-e8: 256 tokens, 8 epochs;
  static-T0.1 the static student at temperature 0.1 (its logits are divided by T too, so the steps shrink:
             not the same as hard targets); static-hard: the teacher's top class as a one-hot target instead
             of its probabilities (mixed with the true labels where known, as always);
  static-e16, static-lr3e-3  16 epochs instead of 8; a learning rate of 3e-3 instead of 1e-2;
  static-wd0  no weight decay (the default decays the table and hidden layer by 0.01);
  static-val-const  trained to a stop on 10% held-out transfer rows (patience 5, up to 40 epochs) at a constant
             learning rate instead of the decaying schedule; static-m2v-loop: the same with model2vec's
             classifier loop settings (lr 1e-3, batch 128, no weight decay, up to 60 epochs);
  static-pre the static student distilled from the *pretrained* all-MiniLM-L6-v2 instead of the teacher's encoder;
  static-base  the same from the teacher's own pretrained backbone (``--teacher``), whatever it is;
  static-m2v-all  model2vec's choices at once: the teacher's pretrained vocabulary, its top class as the
             target, 512 tokens, and static-m2v-loop's validation stop and loop settings;
  l3 ....... paraphrase-MiniLM-L3-v2 fine-tuned on the soft targets (l6-2: all-MiniLM-L6-v2 cut to 2 layers;
             tcut-2, tcut-1: the teacher's own fine-tuned encoder cut to 2 layers or 1);
  lite0-32, lite0-32-b10  images: EfficientNet-Lite0 at 32 px, whole or cut after 10 of its 16 blocks (the
             teacher: ``--teacher efficientnet-lite0:image_size=64``; at 64 px, cutting blocks alone bought at most
             1.6x, since the stem and the first blocks at full resolution cost most);
  m2v ...... the peer: model2vec's ``distill`` of the *pretrained* teacher backbone, then its
             ``StaticModelForClassification`` (default settings) trained on the labelled rows;
  m2v-pseudo the same, trained on the labelled rows plus the teacher's labels for the unlabelled ones.
  static-probe, static-probe-words  the static vectors (no hidden layer) frozen, a logistic-regression probe on
             the teacher's top class over the transfer set; -words: the probe also reads TF-IDF of the words
             (``lexical="tfidf"``, "probe + words"); static-probe-pieces: TF-IDF of the static tokenizer's
             token ids instead of the words (``lexical="pieces"``, "probe + pieces": ``warmstart distill``'s
             default static student until the pair); static-probe-pieces-w6: its weight of the vectors
             against the TF-IDF chosen from six values (0.01 to 0.2) instead of four (0.03 to 0.2);
             static-probe-pieces-len2048: reading 2,048 tokens of each text instead of 512;
  static-pair  ``warmstart distill``'s default static student (``STATIC_TECHNIQUE``, ``--technique
             probe+finetune``): probe + pieces and the fine-tuned static student, both fitted, joined into one
             model that predicts the mean of their logits (``distill.join_pair``); static-pair-d128,
             static-pair-d64: its fine-tuned half keeps the table's first 128 or 64 (PCA) dimensions of 256
             (``--param tuned_dims=N``), a narrower second table to read;
  tfidf .... the strongest simple baseline: TF-IDF + logistic regression (``baselines.fit_tfidf_logreg``, C by
             cross-validation) on the labelled rows; tfidf-pseudo: on the labelled rows plus the teacher's labels
             for the unlabelled ones, as m2v-pseudo learns.

``--no-speed`` leaves out the throughput measurements (``distill_speed.py`` takes them apart, with the machine
to itself) and lets the students of a data set and seed share the teacher's labels, computed once.

    python benchmarks/distill.py --data trec,vader-nyt --seeds 0 --students static,static-lr1e-2
    python benchmarks/distill.py --data sms-spam,bbc-news,reuters-r8 --seeds 0,1,2 --students static,l3,m2v,m2v-pseudo
    python benchmarks/distill.py --data fashion-mnist --teacher efficientnet-lite0:image_size=64 \\
        --students lite0-32,lite0-32-b10 --unlabeled 1500

Rows are keyed by the code version and every setting, appended to ``--output`` (JSON lines); a teacher is kept as
an artifact folder under ``--teachers`` and reused by later students of the same key.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import code_version, keyed_rows, packaged_split  # noqa: E402

# model2vec's classifier loop (Adam-like at lr 1e-3, batches of 128, no weight decay, to a validation stop with
# patience 5), as the shared training loop's parameters: static-m2v-loop and static-m2v-all
M2V_LOOP = {
    "epochs": 60,
    "patience": 5,
    "schedule": "constant",
    "warmup_ratio": 0.0,
    "lr": 1e-3,
    "batch_size": 128,
    "weight_decay": 0.0,
}

# name -> (student, distill options); the technique is finetune unless named
STUDENTS: dict[str, tuple[str, dict]] = {
    "static": ("static", {}),
    "static-h0": ("static", {"hidden_dim": 0}),
    "static-lr1e-3": ("static", {"params": {"lr": 1e-3}}),
    "static-lr1e-2": ("static", {"params": {"lr": 1e-2}}),
    "static-lr3e-2": ("static", {"params": {"lr": 3e-2}}),
    "static-T2": ("static", {"temperature": 2.0}),
    "static-hard0": ("static", {"hard_weight": 0.0}),
    "static-e8": ("static", {"params": {"epochs": 8}}),
    "static-val": ("static", {"val_fraction": 0.1}),
    "static-val-e12": ("static", {"val_fraction": 0.1, "params": {"epochs": 12}}),
    "static-m2v-all": (
        "static:TEACHER",
        {
            "hard_teacher": True,
            "max_length": 512,
            "val_fraction": 0.1,
            "params": M2V_LOOP,
        },
    ),
    "static-pre": ("static:all-MiniLM-L6-v2", {}),
    "static-base": ("static:TEACHER", {}),
    "static-h512": ("static", {"hidden_dim": 512}),
    "static-h256": ("static", {"hidden_dim": 256}),
    "static-h1024": ("static", {"hidden_dim": 1024}),
    "static-pca-none": ("static", {"pca_dims": None}),
    "static-len256": ("static", {"max_length": 256}),
    "static-len512": ("static", {"max_length": 512}),
    "static-len256-e8": ("static", {"max_length": 256, "params": {"epochs": 8}}),
    "static-T0.1": ("static", {"temperature": 0.1}),
    "static-hard": ("static", {"hard_teacher": True}),
    "static-e16": ("static", {"params": {"epochs": 16}}),
    "static-wd0": ("static", {"params": {"weight_decay": 0.0}}),
    "static-lr3e-3": ("static", {"params": {"lr": 3e-3}}),
    "static-val-const": (
        "static",
        {
            "val_fraction": 0.1,
            "params": {"epochs": 40, "patience": 5, "schedule": "constant", "warmup_ratio": 0.0},
        },
    ),
    "static-m2v-loop": (
        "static",
        {
            "val_fraction": 0.1,
            "params": M2V_LOOP,
        },
    ),
    "l3": ("paraphrase-MiniLM-L3-v2", {}),
    "l6-2": ("all-MiniLM-L6-v2:num_layers=2", {}),
    "tcut-2": ("teacher:num_layers=2", {}),
    "tcut-1": ("teacher:num_layers=1", {}),
    "lite0-32": ("efficientnet-lite0:image_size=32", {}),
    "lite0-32-b10": ("efficientnet-lite0:image_size=32,num_blocks=10", {}),
    "m2v": ("model2vec", {}),
    "m2v-pseudo": ("model2vec", {"pseudo": True}),
    "static-probe": ("static", {"technique": "probe", "hidden_dim": 0}),
    "static-probe-words": ("static", {"technique": "probe", "hidden_dim": 0, "params": {"lexical": "tfidf"}}),
    "static-probe-pieces": (
        "static",
        {"technique": "probe", "hidden_dim": 0, "params": {"lexical": "pieces"}},
    ),
    "static-probe-pieces-w6": (
        "static",
        {
            "technique": "probe",
            "hidden_dim": 0,
            "params": {"lexical": "pieces"},
            "weight_grid": [0.01, 0.02, 0.03, 0.05, 0.1, 0.2],
        },
    ),
    "static-probe-pieces-len2048": (
        "static",
        {"technique": "probe", "hidden_dim": 0, "params": {"lexical": "pieces"}, "max_length": 2048},
    ),
    "static-pair": ("static", {"technique": "probe+finetune"}),
    "static-pair-d128": ("static", {"technique": "probe+finetune", "params": {"tuned_dims": 128}}),
    "static-pair-d64": ("static", {"technique": "probe+finetune", "params": {"tuned_dims": 64}}),
    "tfidf": ("tfidf", {}),
    "tfidf-pseudo": ("tfidf", {"pseudo": True}),
}


def key_of(desc: dict) -> str:
    return hashlib.blake2b(json.dumps(desc, sort_keys=True, default=str).encode(), digest_size=8).hexdigest()


def teacher_path(folder: Path, data: str, seed: int, shots: int, teacher: str) -> Path:
    """Where the fine-tuned teacher of (data, seed) is kept: keyed by what it learned from, not by the code
    version (a teacher is an input of the rows, which record the code that trained it, ``teacher_code``)."""
    desc = {"data": data, "seed": seed, "shots": shots, "teacher": teacher}
    return folder / f"{data}-s{seed}-{key_of(desc)}"


def teacher_for(args, version, data, seed, train, folder: Path):
    """The fine-tuned teacher of (data, seed): loaded from its artifact folder, or trained and saved there."""
    from warmstart.artifact import load_artifact, save_artifact
    from warmstart.techniques import get_technique

    path = teacher_path(folder, data, seed, args.shots, args.teacher)
    if path.with_name(path.name + ".json").is_file():
        return load_artifact(path), json.loads(path.with_name(path.name + ".json").read_text())
    est = get_technique("finetune", backbone=args.teacher, seed=seed, progress=False)
    cpu, wall = time.process_time(), time.perf_counter()
    est.fit(train)
    cost = {
        "teacher_code": version,
        "teacher_fit_cpu_s": round(time.process_time() - cpu, 1),
        "teacher_fit_wall_s": round(time.perf_counter() - wall, 1),
    }
    save_artifact(est, path, embed_backbone=True, overwrite=True)
    path.with_name(path.name + ".json").write_text(json.dumps(cost))
    return est, cost


def model2vec_classifier(backbone: str):
    """model2vec's classifier (``StaticModelForClassification``, not fitted) on model2vec's ``distill`` of the
    pretrained ``backbone``."""
    from model2vec.distill import distill_from_model
    from model2vec.train import StaticModelForClassification

    from warmstart.backbones import get_backbone

    base = get_backbone(backbone)
    base.module.config._name_or_path = ""
    static = distill_from_model(base.module, base.tokenizer, device="cpu", pca_dims=256)
    return StaticModelForClassification.from_static_model(model=static)


class TeacherWrapper:
    """The teacher behind a wrapper that changes some of its methods and hands every other attribute on."""

    def __init__(self, teacher) -> None:
        self._teacher = teacher

    def __getattr__(self, name):
        if name.startswith("_"):  # not the teacher's private state (and no recursion before __init__ ran)
            raise AttributeError(name)
        return getattr(self._teacher, name)


class SharedTeacher(TeacherWrapper):
    """The teacher, labelling each text once: its students of one data set and seed (and model2vec's pipeline)
    share its probabilities for the same transfer and test rows instead of running it again for each student.
    A fitted teacher's outputs do not change, so the students learn exactly what they would otherwise. Only
    with ``--no-speed``: a remembered answer would make the teacher's measured speed meaningless."""

    def __init__(self, teacher) -> None:
        super().__init__(teacher)
        self._rows: dict[str, np.ndarray] = {}

    def predict_proba(self, data):
        texts = list(getattr(data, "inputs", data))
        if not all(isinstance(t, str) for t in texts):
            return self._teacher.predict_proba(data)
        known = [t in self._rows for t in texts]
        if not any(known):  # as the teacher would be called without sharing (the whole transfer set, first)
            self._rows.update(zip(texts, self._teacher.predict_proba(data), strict=True))
        elif not all(known):
            new = list(dict.fromkeys(t for t, k in zip(texts, known, strict=True) if not k))
            self._rows.update(zip(new, self._teacher.predict_proba(new), strict=True))
        return np.stack([self._rows[t] for t in texts])

    def predict(self, data):
        return self._teacher.labels_from_proba(self.predict_proba(data))


class HardTeacher(TeacherWrapper):
    """The teacher with its probabilities rounded to one-hot on its top class (``static-hard``): the student
    learns the teacher's labels, as model2vec's pipeline does with ``m2v-pseudo``, instead of its probabilities.
    Its accuracy and predictions are the teacher's."""

    def predict_proba(self, data):
        proba = self._teacher.predict_proba(data)
        return np.eye(proba.shape[1])[proba.argmax(1)]

    def predict(self, data):
        return self._teacher.predict(data)


class Model2VecProba:
    """A model2vec classifier behind the interface ``warmstart.distill.speed`` times, as warmstart's models."""

    def __init__(self, clf) -> None:
        self.clf = clf

    def predict_proba(self, inputs):
        return self.clf.predict_proba(list(inputs))

    def predict(self, inputs):
        return self.clf.predict(list(inputs))


def timed(fit):
    """``fit()``'s result and its CPU and wall seconds, as the rows record them."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fit()
    return out, {
        "fit_cpu_s": round(time.process_time() - cpu, 1),
        "fit_wall_s": round(time.perf_counter() - wall, 1),
    }


def pseudo_labelled(train, unlabeled, teacher):
    """The labelled rows, then the unlabelled ones with the teacher's top class as their label."""
    from warmstart.data import join_datasets

    if unlabeled is None or not len(unlabeled):
        return train
    guessed = unlabeled.subset(np.arange(len(unlabeled)))
    guessed.labels = list(teacher.predict(unlabeled))
    return join_datasets([train, guessed], "labelled rows and the teacher's labels")


def peer_row(args, model, teacher, test, parameters: int, fit: dict) -> dict:
    """A peer that is not a warmstart model (``model``: ``predict`` and ``predict_proba`` on lists of texts)
    scored on the test rows: accuracy, agreement with the teacher and, unless ``--no-speed``, its speed."""
    from warmstart.distill import speed

    texts = list(test.inputs)
    pred = np.asarray(model.predict(texts))
    return {
        "accuracy": float((pred == np.asarray(test.labels)).mean()),
        "agreement": float((pred == teacher.predict(test)).mean()),
        "speed": speed(model, texts) if args.speed else None,
        "parameters": int(parameters),
        **fit,
    }


def model2vec_peer(args, train, unlabeled, teacher, test, pseudo: bool) -> dict:
    """model2vec's own pipeline: distil the pretrained backbone, train its classifier with its defaults."""
    clf = model2vec_classifier(args.teacher)
    rows = pseudo_labelled(train, unlabeled, teacher) if pseudo else train
    _, fit = timed(lambda: clf.fit(list(rows.inputs), list(rows.labels)))
    return peer_row(args, Model2VecProba(clf), teacher, test, sum(p.numel() for p in clf.parameters()), fit)


def tfidf_peer(args, train, unlabeled, teacher, test, pseudo: bool, seed: int) -> dict:
    """TF-IDF + logistic regression on the labelled rows (with ``pseudo``, also on the teacher's labels for the
    unlabelled rows): the simple baseline a static student has to beat."""
    from warmstart.baselines import fit_tfidf_logreg

    rows = pseudo_labelled(train, unlabeled, teacher) if pseudo else train
    fitted, fit = timed(lambda: fit_tfidf_logreg(rows, seed=seed))
    size = fitted.model.coef_.size + fitted.model.intercept_.size
    return {**peer_row(args, fitted, teacher, test, size, fit), "transfer_rows": len(rows)}


def run_student(args, name, teacher, train, unlabeled, test, seed) -> dict:
    from warmstart.distill import distill

    student, opts = STUDENTS[name]
    if student == "model2vec":
        return model2vec_peer(args, train, unlabeled, teacher, test, opts.get("pseudo", False))
    if student == "tfidf":
        return tfidf_peer(args, train, unlabeled, teacher, test, opts.get("pseudo", False), seed)
    opts = {"technique": "finetune", **opts, "params": {**opts.get("params", {}), "progress": False}}
    weight_grid = opts.pop("weight_grid", None)
    if weight_grid is not None:  # the probe's grid of embedding weights, for this student only
        import warmstart.lexical

        default_grid, warmstart.lexical.WEIGHT_GRID = warmstart.lexical.WEIGHT_GRID, tuple(weight_grid)
    if student == "static:TEACHER":
        student = f"static:{args.teacher}"
    if opts.pop("hard_teacher", False):
        teacher = HardTeacher(teacher)
    try:
        result, fit = timed(
            lambda: distill(
                teacher, train, unlabeled, test, student=student, seed=seed, measure_speed=args.speed, **opts
            )
        )
    finally:
        if weight_grid is not None:
            warmstart.lexical.WEIGHT_GRID = default_grid
    c = result.metrics["distillation"]
    est = result.estimator
    chosen = {
        k: getattr(est, a) for k, a in (("C", "C_"), ("lexical_weight", "lexical_weight_")) if hasattr(est, a)
    }
    return {
        "chosen": chosen or None,  # what a probe student's cross-validation chose
        "accuracy": c["student"]["accuracy"],
        "agreement": c["agreement"],
        "speed": c["student"].get("speed"),
        "parameters": c["student"]["parameters"],
        "teacher_speed": c["teacher"].get("speed"),
        "accuracy_difference": c["accuracy_difference"],
        "transfer_rows": c["transfer_rows"],
        "best_epoch": c.get("best_epoch"),
        **fit,
    }


def summary(rows: list[dict], data_sets: list[str], students: list[str]) -> str:
    """Per data set and student, over seeds: accuracy (mean, 95% t-interval over the seeds), the teacher's, what
    was kept, agreement, rows/s, the speed-up over the teacher measured in the same process (in the student's own
    run; for model2vec's rows, in a warmstart student's run of the same data set and seed), one-row latency,
    energy per 1,000 rows."""
    from warmstart.study_stats import mean_ci

    teacher_speed = {(r["data"], r["seed"]): r["teacher_speed"] for r in rows if r.get("teacher_speed")}
    out = [
        "| data | student | seeds | accuracy [95% CI] | teacher | kept | agreement | rows/s | speed-up | "
        "1 row ms | J / 1,000 | teacher J / 1,000 | fit wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for data in data_sets:
        for name in students:
            sel = [r for r in rows if r["data"] == data and r["student"] == name]
            if not sel:
                continue
            ci = mean_ci([100 * r["accuracy"] for r in sel])
            tacc = np.mean([r["teacher_accuracy"] for r in sel])
            timed = [r for r in sel if r.get("speed")]  # rows run with --no-speed have none
            ts = [r.get("teacher_speed") or teacher_speed.get((r["data"], r["seed"])) for r in timed]
            ups = [r["speed"]["rows_per_s"] / t["rows_per_s"] for r, t in zip(timed, ts, strict=True) if t]
            joules = [r["speed"].get("joules_per_1000") for r in timed]
            tj = [t.get("joules_per_1000") for t in ts if t]
            interval = f" [{ci['ci_low']:.1f}, {ci['ci_high']:.1f}]" if len(sel) > 1 else ""
            speeds = " | | | | "
            if timed:
                speeds = (
                    f"{np.mean([r['speed']['rows_per_s'] for r in timed]):,.0f} | "
                    + (f"{np.mean(ups):.1f}x" if ups else "")
                    + f" | {np.mean([r['speed']['single_row_ms'] for r in timed]):.2f} | "
                    + (f"{np.mean(joules):.3g}" if all(j is not None for j in joules) else "")
                )
            out.append(
                f"| {data} | {name} | {len(sel)} | {ci['mean']:.1f}{interval} | {100 * tacc:.1f} | "
                f"{np.mean([r['accuracy'] for r in sel]) / tacc:.3f} | {np.mean([r['agreement'] for r in sel]):.3f} | "
                + speeds
                + " | "
                + (f"{np.mean(tj):.3g}" if tj and all(j is not None for j in tj) else "")
                + f" | {np.mean([r['fit_wall_s'] for r in sel]):.0f} |"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from warmstart.data import few_shot

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="trec,vader-nyt")
    ap.add_argument("--teacher", default="all-MiniLM-L6-v2")
    ap.add_argument("--shots", type=int, default=64)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--students", default="static,m2v")
    ap.add_argument("--unlabeled", type=int, default=4000, help="most unlabelled pool rows per run")
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--output", default="runs/bench/distill.jsonl")
    ap.add_argument("--teachers", default="runs/bench/distill-teachers")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    ap.add_argument(
        "--no-speed",
        dest="speed",
        action="store_false",
        help="skip the throughput measurements (distill_speed.py measures them with the machine to itself) "
        "and let the students of a data set and seed share the teacher's labels (SharedTeacher)",
    )
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    out = Path(args.output)
    done = keyed_rows(out)
    version = code_version()
    rows = []
    for data in args.data.split(","):
        pool, test = packaged_split(data, args.test_rows)
        for seed in [int(s) for s in args.seeds.split(",")]:
            chosen = few_shot(pool.labels, args.shots, seed=seed)
            train = pool.subset(chosen)
            rest = np.setdiff1d(np.arange(len(pool)), chosen)
            rng = np.random.default_rng(seed)
            extra = np.sort(rng.choice(rest, size=min(args.unlabeled, len(rest)), replace=False))
            unlabeled = pool.subset(extra) if len(extra) else None
            if unlabeled is not None:
                unlabeled.labels = None
            teacher, teacher_cost = None, None
            for name in args.students.split(","):
                desc = {
                    "code": version,
                    "data": data,
                    "seed": seed,
                    "shots": args.shots,
                    "teacher": args.teacher,
                    "student": name,
                    "options": STUDENTS[name],
                    "unlabeled": len(extra),
                    "test_rows": len(test),
                }
                key = key_of(desc)
                if key in done and not version.endswith("-dirty"):
                    rows.append(done[key])
                    continue
                if teacher is None:
                    teacher, teacher_cost = teacher_for(args, version, data, seed, train, Path(args.teachers))
                    teacher = teacher if args.speed else SharedTeacher(teacher)
                    t_acc = float((teacher.predict(test) == np.asarray(test.labels)).mean())
                res = run_student(args, name, teacher, train, unlabeled, test, seed)
                row = {"key": key, **desc, "teacher_accuracy": t_acc, **(teacher_cost or {}), **res}
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append(row)
                speeds = ""
                if res["speed"]:
                    ts = (res.get("teacher_speed") or {}).get("rows_per_s")
                    speeds = f", {res['speed']['rows_per_s']:,.0f} rows/s (teacher {ts})"
                print(
                    f"{data} seed {seed} {name}: {res['accuracy']:.4f} (teacher {t_acc:.4f}){speeds}, "
                    f"fit {res['fit_wall_s']} s",
                    flush=True,
                )
    print(summary(rows, args.data.split(","), args.students.split(",")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
