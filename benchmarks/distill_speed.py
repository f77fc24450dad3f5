"""Inference speed of a teacher and its students, measured together with the machine to itself.

``benchmarks/distill.py`` measures each student's speed in its own run, right after training it, and those
runs often share the CPU with others; this script measures only speed, the models taking turns in one process,
so that the ratios are like for like. A model's speed does not depend on its weights (no architecture here stops
early or skips work by value), so the students are trained for one short epoch on 64 rows, only to have fitted
heads; their accuracy is not the point here and is not reported (``benchmarks/distill.py`` has it).

Per data set: the saved seed-0 teacher of ``benchmarks/distill.py`` (all-MiniLM-L6-v2 fine-tuned at 64 labelled
rows per class), the same test rows, and the students:

  static ........ the static student fine-tuned (hidden layer of 512, 512 tokens), distilled from the teacher;
                  static-probe-pieces: a probe with TF-IDF of its token ids; static-pair: ``warmstart
                  distill``'s default static student (the two joined: ``distill.join_pair``); any other student of ``benchmarks/distill.py`` by name, with its options
                  (``static-len256``: reading 256 tokens);
  static-h0 ..... the same without the hidden layer;
  tcut-2 ........ the teacher's encoder cut to 2 layers (tcut-1: to 1); l3: paraphrase-MiniLM-L3-v2;
  lite0-32, lite0-32-b10  images (with ``--teacher efficientnet-lite0:image_size=64``): EfficientNet-Lite0 at
                  32 px, whole or cut after 10 blocks;
  model2vec ..... model2vec's ``StaticModelForClassification`` on model2vec's ``distill`` of the pretrained
                  backbone (its own inference path: its tokenizer call, its pooling, its MLP head).
  tfidf ......... TF-IDF + logistic regression (``baselines.fit_tfidf_logreg``), the simple baseline, fitted on
                  all the test rows labelled by the teacher: every test word is in its vocabulary, so each row
                  costs it as much as it can (a real fit on other rows knows fewer of them).

With ``--fp32-lookup``, each static student is also timed reading its fp32 tables (``NAME-fp32``: the same
model, its fp16 lookup table switched off, as prediction read it before the fp16 lookup), so that the two
lookups are compared in one process, in turns.

With ``--onnx``, each warmstart student is also saved as an artifact and exported by ``warmstart.export`` (its
parity check on the same test rows, which must pass), and the exported model (``NAME-onnx``: onnxruntime, fp32,
its own tokenizer, batches of ``--onnx-batch`` rows) is timed beside the others.

Each round times every model once over all the test rows (``distill.speed``: best of passes within about two
seconds, the energy of 1,000 predictions, the median latency of one row); the table keeps each model's best
round.

    python benchmarks/distill_speed.py --data sms-spam,reuters-r8,bbc-news --rounds 3
    python benchmarks/distill_speed.py --data sms-spam --students static,static-probe-pieces --onnx
    python benchmarks/distill_speed.py --data bbc-news --students static-pair,static-probe-pieces --fp32-lookup \
        --rounds 5
    python benchmarks/distill_speed.py --data fashion-mnist --teacher efficientnet-lite0:image_size=64 \\
        --students lite0-32,lite0-32-b10
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import code_version, packaged_split  # noqa: E402
from distill import STUDENTS, Model2VecProba, model2vec_classifier, teacher_path  # noqa: E402

DEFAULT_STUDENTS = ("static-pair", "static-probe-pieces", "static", "tcut-1", "model2vec")


def teacher_folder(folders: Path, data: str, teacher: str, shots: int) -> Path:
    """The seed-0 teacher that ``benchmarks/distill.py`` saved for ``data``."""
    path = teacher_path(folders, data, 0, shots, teacher)
    if not path.is_dir():
        raise SystemExit(
            f"{path}: no saved teacher; run benchmarks/distill.py --data {data} --seeds 0 first."
        )
    return path


def students_of(teacher, test, names: list[str], base: str) -> dict:
    """Each student with a fitted head: one epoch on 64 test rows labelled by the teacher (speed only); names
    are ``benchmarks/distill.py``'s students, with their options. A model that reads words (``tfidf``, a probe
    student with words) is fitted on every test row with the teacher's labels instead, so that every test word
    is in its vocabulary and each row costs it as much as it can."""
    from warmstart.distill import make_student, student_hidden_dim
    from warmstart.techniques import get_technique

    rows = test.subset(np.arange(min(64, len(test))))
    rows.labels = list(teacher.predict(rows))
    every = None
    out = {}
    for name in names:
        if name == "model2vec":
            clf = model2vec_classifier(base)
            clf.fit(list(rows.inputs), list(rows.labels), max_epochs=1)
            out[name] = Model2VecProba(clf)
            continue
        student, opts = STUDENTS[name]
        if every is None and (student == "tfidf" or opts.get("technique", "").startswith("probe")):
            every = test.subset(np.arange(len(test)))
            every.labels = list(teacher.predict(every))
        # tfidf and tfidf-pseudo: the same model at inference, whatever rows it learned from
        if student == "tfidf":
            from warmstart.baselines import fit_tfidf_logreg

            out[name] = fit_tfidf_logreg(every)
            continue
        if opts.get("technique") == "probe+finetune":  # as distill builds it, its halves fitted as above
            from warmstart.distill import fit_pair
            from warmstart.techniques.tuned import SoftTargets

            bb = make_student(teacher, student, progress=False, max_length=opts.get("max_length"))
            classes = np.asarray(teacher.classes_)
            onehot = (np.asarray(every.labels)[:, None] == classes[None, :]).astype(np.float64)
            params = {"lexical": "pieces", "epochs": 1, "progress": False, **opts.get("params", {})}
            hidden = student_hidden_dim(student)
            out[name], _ = fit_pair(bb, every, SoftTargets(classes, onehot), hidden, 0, params)
            continue
        hidden = student_hidden_dim(student, opts.get("hidden_dim"))
        bb = make_student(
            teacher, student, progress=False, hidden_dim=hidden, max_length=opts.get("max_length")
        )
        technique = opts.get("technique", "finetune")
        if technique == "finetune":
            out[name] = get_technique("finetune", backbone=bb, epochs=1, progress=False).fit(rows)
        else:
            est = get_technique(technique, backbone=bb, progress=False, **opts.get("params", {}))
            out[name] = est.fit(every)
    return out


def fp32_lookups(models: dict) -> dict:
    """A copy of each static student (a warmstart model whose backbone has a static table) that reads its fp32
    tables at prediction too, as ``NAME-fp32``: the fp16 lookup table switched off, nothing else changed."""
    import types

    out = {}
    for name, est in models.items():
        module = getattr(getattr(est, "backbone_", None), "module", None)
        if not hasattr(module, "lookup_table"):
            continue
        twin = copy.deepcopy(est)
        twin.backbone_.module.lookup_table = types.MethodType(lambda self: None, twin.backbone_.module)
        out[f"{name}-fp32"] = twin
    return out


def exported(models: dict, test, folder: Path, batch_size: int) -> dict:
    """Each warmstart student of ``models`` exported to ONNX (the parity check on ``test``), as ``NAME-onnx``."""
    from warmstart.artifact import save_artifact
    from warmstart.errors import ExportError
    from warmstart.export import OnnxModel, export_onnx

    out = {}
    for name, est in models.items():
        if name == "teacher" or not hasattr(est, "backbone_"):
            continue
        save_artifact(est, folder / name, embed_backbone=True, overwrite=True)
        try:
            report = export_onnx(folder / name, folder / f"{name}-onnx", data=test, rounds=1)
        except ExportError as e:  # a student that cannot be exported (probe + words) is said so and left out
            print(f"{name}: not exported: {e}", flush=True)
            continue
        print(f"{name}: exported, parity max |dp| {report.parity['fp32']['max_abs_diff']:.2e}", flush=True)
        out[f"{name}-onnx"] = OnnxModel(folder / f"{name}-onnx", batch_size=batch_size)
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from warmstart.artifact import load_artifact
    from warmstart.distill import speed

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="sms-spam,reuters-r8,bbc-news")
    ap.add_argument("--teacher", default="all-MiniLM-L6-v2")
    ap.add_argument("--shots", type=int, default=64)
    ap.add_argument("--students", default=",".join(DEFAULT_STUDENTS))
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--teachers", default="runs/bench/distill-teachers")
    ap.add_argument("--output", default="runs/bench/distill_speed.jsonl")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    ap.add_argument(
        "--fp32-lookup", action="store_true", help="also time each static student reading its fp32 tables"
    )
    ap.add_argument("--onnx", action="store_true", help="also export each student to ONNX and time that")
    ap.add_argument("--onnx-batch", type=int, default=256, help="rows per onnxruntime call (default 256)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    version = code_version()
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = args.students.split(",")
    print(f"code {version}, torch threads {torch.get_num_threads()}", flush=True)
    print("| data | model | rows/s | speed-up | 1 row, ms | J / 1,000 | rows/s over rounds |")
    print("|---|---|---|---|---|---|---|")
    for data in args.data.split(","):
        _, test = packaged_split(data, args.test_rows)
        teacher = load_artifact(teacher_folder(Path(args.teachers), data, args.teacher, args.shots))
        models = {"teacher": teacher, **students_of(teacher, test, names, args.teacher)}
        if args.fp32_lookup:
            twins = fp32_lookups(models)
            for name in twins:  # how far the fp16 lookup moved each student's predictions
                a, b = (np.asarray(models[n].predict_proba(list(test.inputs))) for n in (name[:-5], name))
                print(
                    f"{name[:-5]} against {name}: largest probability difference {np.abs(a - b).max():.2g}, "
                    f"the same top class on {(a.argmax(1) == b.argmax(1)).mean():.2%} of {len(a)} rows",
                    flush=True,
                )
            models.update(twins)
        if args.onnx:
            import tempfile

            folder = Path(tempfile.mkdtemp(prefix="distill-speed-"))
            models.update(exported(models, test, folder, args.onnx_batch))
        inputs = test.inputs if test.modality == "image" else list(test.inputs)
        runs: dict[str, list[dict]] = {k: [] for k in models}
        for _ in range(args.rounds):  # in turns, so that a slow spell of the machine hits every model
            for k, m in models.items():
                runs[k].append(speed(m, inputs))
        best = {k: max(v, key=lambda s: s["rows_per_s"]) for k, v in runs.items()}
        for k in models:
            row = {
                "code": version,
                "data": data,
                "model": k,
                "test_rows": len(inputs),
                "threads": torch.get_num_threads(),
                "rounds": [r["rows_per_s"] for r in runs[k]],
                **best[k],
                "speedup": round(best[k]["rows_per_s"] / best["teacher"]["rows_per_s"], 2),
                "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(
                f"| {data} | {k} | {row['rows_per_s']:,.0f} | {row['speedup']:.1f}x | {row['single_row_ms']:.2f} | "
                f"{row['joules_per_1000']:.3g} | {', '.join(f'{v:,.0f}' for v in row['rounds'])} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
