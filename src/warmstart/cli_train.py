"""The commands that train and study: fit, study, report, forecast, suggest, adapt, distill."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .cli_common import (
    columns,
    data_and_test,
    data_record,
    fit_params,
    load_data,
    parse_value,
    runtime_params,
    where,
)
from .errors import DataError, ParameterError, WarmstartError


def cmd_fit(args: argparse.Namespace) -> int:
    from .run import fit_run

    data, test = data_and_test(args)
    unlabeled = None
    if args.unlabeled:
        from .data.load import load_unlabeled

        unlabeled = load_unlabeled(args.unlabeled, data.modality, columns(args))
    result = fit_run(
        data,
        test=test,
        backbone=args.backbone,
        technique=args.technique,
        shots=args.shots,
        seed=args.seed,
        val_size=args.val_size,
        test_size=args.test_size,
        params=fit_params(args),
        output=args.output,
        embed_backbone=args.embed_backbone,
        budget=args.budget,
        max_params=args.max_params,
        max_memory_mb=args.max_memory,
        race=not args.no_race,
        record={
            "data": where(args.data),
            "test": where(args.test),
            **({"unlabeled": where(args.unlabeled)} if args.unlabeled else {}),
            **data_record(args),
        },
        overwrite=args.overwrite,
        unlabeled=unlabeled,
    )
    from . import distributed

    if distributed.is_main():  # rank 0 reports
        _print_fit(result, args)
    return 0


def _print_fit(result: Any, args: argparse.Namespace) -> None:
    choice = result.config.get("technique_choice")
    if choice:
        from .selection.recommend import Recommendation

        rec = Recommendation.from_dict(choice)
        print(rec.table())
        print(rec.explain() + "\n")
        args.technique = rec.technique
    m = result.metrics
    print(
        f"{args.technique} on {args.backbone}: trained on {result.config['n_train']} rows, "
        f"tested on {result.config['n_test']}"
    )
    c = m["cost"]
    print(
        f"  accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}   "
        f"fit {m['timings']['fit_seconds']:.1f}s ({c['fit_cpu_seconds']:.0f} CPU-s)   "
        f"predict {m['timings']['predict_seconds']:.1f}s"
    )
    print(f"  trainable parameters {c['trainable_params']:,}   peak memory {c['fit_peak_rss_mb']:.0f} MB")
    st = result.config.get("self_training")
    if st:
        print(
            f"  self-training on {st['unlabeled_rows']:,} unlabelled rows (the training rows above are labelled):"
        )
        for r in st["rounds"]:
            print(
                f"    round {r['round']}: {r['rows']:,} pseudo-labelled rows, confidence >= "
                f"{r['min_confidence_taken']}, {r['changed_since_last_round']} changed since the round before"
            )
    if "note" in m:
        print(f"  note: {m['note']}")
    print(f"  artifact: {result.artifact}")


def cmd_study(args: argparse.Namespace) -> int:
    from .study import StudyConfig, parse_shots, run_study

    data, test = data_and_test(args)
    params: dict[str, dict] = {}
    for kv in args.param:
        key, sep, value = kv.partition("=")
        tech, dot, name = key.partition(".")
        if not sep or not dot or not tech or not name:
            raise ParameterError(
                f"--param {kv!r} is not TECHNIQUE.KEY=VALUE; write it like --param finetune.epochs=3."
            )
        params.setdefault(tech, {})[name] = parse_value(value)
    cfg = StudyConfig(
        data=args.data if not args.test else f"{args.data} (test: {args.test})",
        backbone=args.backbone,
        techniques=[t.strip() for t in args.techniques.split(",") if t.strip()],
        shots=parse_shots(args.shots),
        seeds=args.seeds,
        params=params,
        metric=args.metric,
        test_rows=args.test_rows,
        test_size=args.test_size,
        split_seed=args.split_seed,
        unlabeled=where(args.unlabeled),
        **runtime_params(args),
    )
    unlabeled = None
    if args.unlabeled and args.unlabeled != "rest":
        from .data.load import load_unlabeled

        unlabeled = load_unlabeled(args.unlabeled, data.modality, columns(args))
    run_study(
        data,
        cfg,
        args.output,
        test=test,
        unlabeled=unlabeled,
        engine=args.engine,
        ray_address=args.ray_address,
        cpus_per_cell=args.cpus_per_cell,
    )
    from .report import study_markdown, write_study_report

    write_study_report(args.output)
    print(study_markdown(args.output))
    print(f"\nresults: {args.output}/results.csv   report: {args.output}/report.html")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report import write_artifact_report, write_distillation_report, write_study_report

    if len(args.path) > 1:
        if not args.output:
            raise ParameterError("several students go into one report: name it with --output FILE.html.")
        print(f"wrote {write_distillation_report(args.path, args.output)}")
        return 0
    path = Path(args.path[0])
    if (path / "study.json").is_file():
        from .study import finish_study

        finish_study(path)  # tables and summary from the cells, as the study wrote them
        out = write_study_report(path, args.output)
    elif (path / "warmstart.json").is_file():
        out = write_artifact_report(path, args.output)
    else:
        raise DataError(f"{path}: neither a study folder (study.json) nor an artifact (warmstart.json).")
    print(f"wrote {out}")
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from ._io import atomic_write_json
    from .forecast import forecast_study, forecast_text

    if not 0 < args.level < 1:
        raise ParameterError(f"--level takes a number between 0 and 1; got {args.level}.")
    if args.data:
        if args.study:
            raise ParameterError("give a study folder or --data, not both.")
        from .forecast import quick_curve

        data, test = data_and_test(args)
        args.study = str(args.output or Path("runs") / f"forecast-{Path(args.data).stem}")
        quick_curve(
            data, args.study, test=test, backbone=args.backbone, seeds=args.seeds, **runtime_params(args)
        )
    elif not args.study:
        raise ParameterError(
            "give a study folder (warmstart study --output), or --data for a quick probe curve."
        )
    if not (Path(args.study) / "study.json").is_file():
        raise DataError(f"{args.study}: not a study folder (no study.json); run `warmstart study` first.")
    result = forecast_study(
        args.study, target=args.target, metric=args.metric, techniques=args.technique, level=args.level
    )
    atomic_write_json(Path(args.study) / "forecast.json", result)
    print(json.dumps(result, indent=2) if args.json else forecast_text(result))
    return 0


def cmd_suggest(args: argparse.Namespace) -> int:
    from ._io import atomic_write_bytes
    from .artifact import check_writable, load_artifact, training_rows
    from .data.load import load_inputs
    from .selection.suggest import resolve_strategy, suggest_table

    if args.n < 1:
        raise ParameterError(f"--n takes the number of rows to suggest, at least 1; got {args.n}.")
    check_writable(args.output)
    model = load_artifact(args.artifact, device=args.device)
    data = load_inputs(args.inputs, model.backbone_.modality, columns(args))
    if args.labeled == "none":
        labeled = None
    elif args.labeled:
        labeled = load_data(args.labeled, args, require_labels=False)[0]
    else:
        try:
            labeled = training_rows(args.artifact)
        except WarmstartError as e:
            labeled = None
            print(
                f"note: the artifact's training rows could not be read again ({e}); suggesting without them "
                "(--labeled FILE names them).",
                file=sys.stderr,
            )
    table = suggest_table(model, data, args.n, strategy=args.strategy, labeled=labeled, seed=args.seed)
    atomic_write_bytes(args.output, table.to_csv(index=False).encode())
    known = f", {len(labeled)} labelled rows left out and kept apart" if labeled is not None else ""
    strategy = resolve_strategy(args.strategy, data.modality)
    print(f"wrote {len(table)} of {len(data)} rows to label ({strategy}{known}) to {args.output}")
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from .adapt import adapt_backbone
    from .backbones import get_backbone
    from .data.load import load_unlabeled

    backbone = get_backbone(args.backbone)  # loaded once: for the rows' modality and for the adaptation
    rows = load_unlabeled(args.unlabeled, backbone.modality, columns(args))
    rt = runtime_params(args)
    rec = adapt_backbone(
        backbone,
        rows,
        args.output,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_rows=args.max_rows,
        seed=args.seed,
        overwrite=args.overwrite,
        **rt,
    )
    if rec.get("reused"):
        print(f"{args.output}: already adapted with these settings ({rec['method']}); nothing to do.")
    else:
        print(
            f"{args.backbone} adapted by {rec['method']} on {rec['rows']:,} of {rec['unlabeled_rows']:,} rows "
            f"({rec['steps']} steps, {rec['seconds']:.1f}s): {args.output}"
        )
    print(f"use it: warmstart fit --backbone {args.output} ...")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from .artifact import artifact_modality
    from .data.load import load_unlabeled
    from .distill import distill_run, distill_text

    unlabeled = None
    if args.unlabeled:  # read as the teacher reads (text or images), checked before any training; text files
        # stream (read a chunk at a time when used), as fit's --unlabeled rows do
        unlabeled = load_unlabeled(args.unlabeled, artifact_modality(args.teacher), columns(args))
    test = load_data(args.test, args)[0] if args.test else None
    result = distill_run(
        args.teacher,
        unlabeled=unlabeled,
        test=test,
        output=args.output,
        overwrite=args.overwrite,
        # how --test was read (the teacher's record says how its own data was)
        record={
            "unlabeled": where(args.unlabeled),
            "test": where(args.test),
            **(data_record(args) if args.test else {}),
        },
        student=args.student,
        technique=args.technique,
        params=fit_params(args),
        temperature=args.temperature,
        hard_weight=args.hard_weight,
        pca_dims=args.pca_dims,
        seed=args.seed,
        measure_speed=not args.no_speed,
        val_fraction=args.val_fraction,
        hidden_dim=args.hidden_dim,
        max_length=args.max_length,
    )
    print(distill_text(result))
    return 0
