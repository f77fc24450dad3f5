"""The `warmstart` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .cli_args import build_parser
from .errors import DataError, ParameterError, WarmstartError


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _columns(args: argparse.Namespace) -> Any:
    """The data options of a command (``--text-col``, ``--label-col``, ...) as ``data.load.Columns``."""
    from .data.load import Columns

    opts = {k: getattr(args, k, None) for k in DATA_OPTIONS}
    return Columns(
        **{**opts, "encoding": opts["encoding"] or "utf-8", "drop_empty": bool(opts["drop_empty"])}
    )


def load_data(spec: str, args: argparse.Namespace, require_labels: bool = True):
    """``--data``/``--test`` -> (data, its own test split or None), read by ``data.load.load``."""
    from .data.load import load

    return load(spec, _columns(args), require_labels)


def _data_and_test(args: argparse.Namespace) -> tuple[Any, Any]:
    """--data, and --test (else the data set's own test split, or None)."""
    data, test = load_data(args.data, args)
    if args.test:
        test, _ = load_data(args.test, args)
    return data, test


def cmd_fit(args: argparse.Namespace) -> int:
    from .run import fit_run

    data, test = _data_and_test(args)
    unlabeled = None
    if args.unlabeled:
        from .data.load import load_unlabeled

        unlabeled = load_unlabeled(args.unlabeled, data.modality, _columns(args))
    result = fit_run(
        data,
        test=test,
        backbone=args.backbone,
        technique=args.technique,
        shots=args.shots,
        seed=args.seed,
        val_size=args.val_size,
        test_size=args.test_size,
        params=_fit_params(args),
        output=args.output,
        embed_backbone=args.embed_backbone,
        budget=args.budget,
        max_params=args.max_params,
        max_memory_mb=args.max_memory,
        race=not args.no_race,
        record={
            "data": _where(args.data),
            "test": _where(args.test),
            **({"unlabeled": _where(args.unlabeled)} if args.unlabeled else {}),
            **_data_record(args),
        },
        overwrite=args.overwrite,
        unlabeled=unlabeled,
    )
    from . import distributed

    if distributed.is_main():  # rank 0 reports
        _print_fit(result, args)
    return 0


def _fit_params(args: argparse.Namespace) -> dict[str, Any]:
    """The technique's parameters: every --param KEY=VALUE (JSON values), then the runtime and cache options."""
    params = {}
    for kv in args.param:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param {kv!r} is not KEY=VALUE; write it like --param C=0.1.")
        params[key] = _parse_value(value)
    params.update({k: v for k, v in runtime_params(args).items() if k not in params})
    if args.cache_dir:
        params.setdefault("cache_dir", args.cache_dir)
    if args.no_cache:
        params["use_cache"] = False
    return params


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


DATA_OPTIONS = ("text_col", "label_col", "encoding", "drop_empty", "label_sep", "split")


def _where(spec: str | None) -> str | None:
    """A data path as an absolute path (so an artifact finds its data from any folder); names pass through."""
    if spec is None or not Path(spec).exists():
        return spec
    return str(Path(spec).resolve())


def _data_record(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in DATA_OPTIONS}


def cmd_export(args: argparse.Namespace) -> int:
    if not (args.onnx or args.transformers):
        raise ParameterError("say which format to export to: --onnx, --transformers, or both.")
    if args.onnx and args.transformers and args.output:
        raise ParameterError("--output names one folder; export one format at a time when you give it.")
    from .artifact import held_out, verify_artifact

    artifact = Path(args.artifact)
    verify_artifact(artifact)
    rows = held_out(artifact, args.test, _columns(args))
    if args.onnx:
        from .export import export_onnx

        report = export_onnx(
            artifact, args.output, data=rows, int8=args.int8, atol=args.atol, max_rows=args.max_rows
        )
        print(report.summary())
    if args.transformers:
        from .export_transformers import export_transformers

        hf = export_transformers(artifact, args.output, data=rows, atol=args.atol, max_rows=args.max_rows)
        print(
            f"transformers folder: {hf['folder']} (AutoModel + classifier.safetensors; its README.md shows how to "
            f"load it). Checked on {hf['rows']} held-out rows: max probability difference "
            f"{hf['max_abs_diff']:.1e}, same top class on {hf['top_class_agreement']:.0%}."
        )
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    from .study import StudyConfig, parse_shots, run_study

    data, test = _data_and_test(args)
    params: dict[str, dict] = {}
    for kv in args.param:
        key, sep, value = kv.partition("=")
        tech, dot, name = key.partition(".")
        if not sep or not dot or not tech or not name:
            raise ParameterError(
                f"--param {kv!r} is not TECHNIQUE.KEY=VALUE; write it like --param finetune.epochs=3."
            )
        params.setdefault(tech, {})[name] = _parse_value(value)
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
        unlabeled=_where(args.unlabeled),
        **runtime_params(args),
    )
    unlabeled = None
    if args.unlabeled and args.unlabeled != "rest":
        from .data.load import load_unlabeled

        unlabeled = load_unlabeled(args.unlabeled, data.modality, _columns(args))
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
    from .report import write_artifact_report, write_study_report

    path = Path(args.path)
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

        data, test = _data_and_test(args)
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
    data = load_inputs(args.inputs, model.backbone_.modality, _columns(args))
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
    rows = load_unlabeled(args.unlabeled, backbone.modality, _columns(args))
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
    from .data.load import load_inputs
    from .distill import distill_run, distill_text

    unlabeled = None
    if args.unlabeled:  # read as the teacher reads (text or images), checked before any training
        unlabeled = load_inputs(args.unlabeled, artifact_modality(args.teacher), _columns(args))
    test = load_data(args.test, args)[0] if args.test else None
    result = distill_run(
        args.teacher,
        unlabeled=unlabeled,
        test=test,
        output=args.output,
        overwrite=args.overwrite,
        # how --test was read (the teacher's record says how its own data was)
        record={
            "unlabeled": _where(args.unlabeled),
            "test": _where(args.test),
            **(_data_record(args) if args.test else {}),
        },
        student=args.student,
        technique=args.technique,
        params=_fit_params(args),
        temperature=args.temperature,
        hard_weight=args.hard_weight,
        pca_dims=args.pca_dims,
        seed=args.seed,
        measure_speed=not args.no_speed,
        val_fraction=args.val_fraction,
    )
    print(distill_text(result))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import Limits, default_image_pixels, serve

    limits = Limits(
        max_body_bytes=args.max_body_bytes,
        max_inputs=args.max_inputs,
        max_text_chars=args.max_text_chars,
        max_image_pixels=args.max_image_pixels or default_image_pixels(),
        max_batch_rows=args.max_batch_rows,
        batch_wait_ms=args.batch_wait_ms,
    )
    print(
        f"serving {args.artifact} on http://{args.host}:{args.port} (OpenAPI: /docs, /openapi.json)",
        file=sys.stderr,
    )
    serve(
        args.artifact, host=args.host, port=args.port, limits=limits, device=args.device, threads=args.threads
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .artifact import load_artifact
    from .predict import check_output, prediction_table

    if args.output:
        check_output(Path(args.output), Path(args.artifact), Path(args.inputs))
    model = load_artifact(args.artifact, device=args.device)
    from .data.load import load_inputs

    data = load_inputs(args.inputs, model.backbone_.modality, _columns(args))
    df, note = prediction_table(model, data, tta=args.tta, label_sep=args.label_sep or "|")
    out = args.output
    fmt = args.format or (Path(out).suffix.lstrip(".") if out else "csv")
    if fmt == "json":
        text = df.to_json(orient="records", indent=1)
    elif fmt == "csv":
        text = df.to_csv(index=False)
    else:
        raise DataError(f"--format must be csv or json; got {fmt!r}.")
    if out:
        from ._io import atomic_write_bytes

        atomic_write_bytes(out, text.encode())
        print(f"wrote {len(df)} predictions to {out}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if note:
        print(note, file=sys.stderr)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from .data import few_shot
    from .selection.recommend import recommend

    data, _ = load_data(args.data, args)
    if args.shots:
        data = data.subset(few_shot(data.labels, args.shots, seed=args.seed))
    rec = recommend(
        data,
        args.backbone,
        budget=args.budget,
        max_params=args.max_params,
        max_memory_mb=args.max_memory,
        race=not args.no_race,
        candidates=[c.strip() for c in args.candidates.split(",")] if args.candidates else None,
        params=runtime_params(args),
        seed=args.seed,
    )
    print(rec.table())
    print()
    print(rec.explain())
    if rec.technique:
        shots = f" --shots {args.shots}" if args.shots else ""
        print(
            f"\nrun it: warmstart fit --data {args.data} --backbone {args.backbone}{shots} --technique {rec.technique} -o OUT"
        )
    return 0 if rec.technique else 3


def runtime_params(args: argparse.Namespace) -> dict[str, str]:
    """``device`` and ``precision`` from the command line, as technique parameters."""
    chosen = [p for p, flag in (("bf16", args.bf16), ("fp32", args.fp32)) if flag]
    if args.precision:
        chosen.append(args.precision)
    if len(set(chosen)) > 1:
        raise ParameterError(
            f"conflicting precisions {sorted(set(chosen))}: give one of --precision, --bf16, --fp32."
        )
    return {"device": args.device, "precision": chosen[0] if chosen else "auto"}


def cmd_rank(args: argparse.Namespace) -> int:
    from collections import Counter

    from ._io import atomic_write_json
    from .data import few_shot
    from .features import FeatureCache
    from .selection import ALL_SCORES, rank_backbones

    data, _ = load_data(args.data, args)
    counts = Counter(str(v) for v in data.labels) if data.labels is not None else None
    if args.shots:  # the metric follows the full set's class balance, not the balanced sample's
        data = data.subset(few_shot(data.labels, args.shots, seed=args.seed))
    scores = [s.strip() for s in args.scores.split(",") if s.strip()] if args.scores else list(ALL_SCORES)
    backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    ranking = rank_backbones(
        data,
        backbones,
        scores=scores,
        primary=args.primary,
        cache=FeatureCache(args.cache_dir, enabled=not args.no_cache),
        max_rows=args.max_rows,
        resamples=args.resamples,
        **runtime_params(args),
        seed=args.seed,
        metric=args.metric,
        class_counts=counts,
    )
    print(ranking.table())
    print()
    print(ranking.explain())
    if args.json:
        atomic_write_json(Path(args.json), ranking.to_dict())
        print(f"\nwritten: {args.json}")
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    from .backbones import available_backbones

    print(f"{'name':24} {'modality':8} {'licence':10} {'installed':9} description")
    for spec in available_backbones().values():
        here = "yes" if spec.installed() else "no"
        print(f"{spec.name:24} {spec.modality:8} {spec.licence:10} {here:9} {spec.description}")
    print(
        "\nNot installed: run scripts/setup.sh. Also accepted: a local transformers or sentence-transformers folder,\n"
        "a folder saved by warmstart, or a Hugging Face hub id (org/model, or hf:org/model): text encoders\n"
        "(BERT, RoBERTa, XLM-R, DeBERTa-v2/v3, MPNet, ModernBERT, DistilBERT) and image encoders (ViT, DeiT,\n"
        "DINOv2, BEiT, Swin, ConvNeXt, ResNet, CLIP and SigLIP vision towers), chosen by the model's config.\n"
        "Options after a colon: num_layers=N, num_blocks=N (CNNs), init=random, seed=S (docs/backbones.md)."
    )
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from .push import push_artifact

    url = push_artifact(args.artifact, args.repo_id, private=args.private, commit_message=args.message)
    print(f"pushed {args.artifact} to {args.repo_id}: {url}")
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    import shutil

    from ._io import warmstart_home
    from .techniques.train import abandoned_checkpoints

    root = Path(args.checkpoint_dir) if args.checkpoint_dir else warmstart_home() / "checkpoints"
    old = abandoned_checkpoints(root, args.older_than)
    for folder, age, size in old:
        print(
            f"{'removed' if args.remove else 'abandoned'}  {folder}  {age:.0f} h old  {size / 2**20:.0f} MB"
        )
        if args.remove:
            shutil.rmtree(folder, ignore_errors=True)
    total = sum(size for _, _, size in old) / 2**20
    verb = "removed" if args.remove else "found (pass --remove to delete them; rerunning a fit resumes it)"
    print(f"{len(old)} checkpoint(s) older than {args.older_than:g} h, {total:.0f} MB, {verb}")
    return 0


def cmd_techniques(args: argparse.Namespace) -> int:
    from .techniques import available_techniques

    for name, cls in available_techniques().items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:10} {doc}")
        if args.verbose:
            defaults = cls().get_params()
            print("           " + ", ".join(f"{k}={v!r}" for k, v in defaults.items() if k != "backbone"))
    if not args.verbose:
        print("\n`warmstart techniques -v` lists each one's parameters (set them with --param KEY=VALUE).")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from .data import PACKAGED

    for name, (_, desc) in PACKAGED.items():
        print(f"{name:16} {desc}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(
        shots=[int(s) for s in args.shots.split(",")],
        seed=args.seed,
        precision=runtime_params(args)["precision"],
        backbone=args.backbone,
        output=args.output,
        test_rows=args.test_rows,
    )
    return 0


COMMANDS = {
    "fit": cmd_fit,
    "predict": cmd_predict,
    "study": cmd_study,
    "report": cmd_report,
    "forecast": cmd_forecast,
    "suggest": cmd_suggest,
    "export": cmd_export,
    "serve": cmd_serve,
    "distill": cmd_distill,
    "adapt": cmd_adapt,
    "rank": cmd_rank,
    "recommend": cmd_recommend,
    "push": cmd_push,
    "demo": cmd_demo,
    "clean": cmd_clean,
    "backbones": cmd_backbones,
    "techniques": cmd_techniques,
    "datasets": cmd_datasets,
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # show the traceback of an error instead of its one-line message
    if debug:
        argv.remove("--debug")
    args = build_parser().parse_args(argv)
    from . import distributed

    distributed.init_from_env(
        getattr(args, "device", "auto")
    )  # under torchrun: join the process group (data-parallel training)
    try:
        return COMMANDS[args.command](args)
    except WarmstartError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from .techniques.train import Interrupted

        if isinstance(e, Interrupted):
            print(f"interrupted: {e}", file=sys.stderr)
        else:
            print("interrupted; nothing half-written was left behind.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
