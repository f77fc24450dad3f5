"""The `warmstart` command line: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import DataError, ParameterError, WarmstartError

EPILOG = """examples:
  warmstart fit --data reviews.csv --shots 16 --output runs/reviews
  warmstart fit --data 20newsgroups --backbone paraphrase-MiniLM-L3-v2 --shots 8 --output runs/ng
  warmstart fit --data photos/ --backbone efficientnet-lite0 --output runs/photos
  warmstart fit --data trec --technique lora --shots 64 --param epochs=4 --output runs/trec-lora
  warmstart predict runs/reviews new_reviews.csv --output predictions.csv
  warmstart rank --data trec --backbones all-MiniLM-L6-v2,paraphrase-MiniLM-L3-v2
  warmstart fit --data trec --shots 64 --technique auto --budget 2m --output runs/trec-auto
  warmstart fit --data trec --backbone all-mpnet-base-v2 --device cuda --precision bf16 --output runs/mpnet
  warmstart backbones

Errors are one line; add --debug anywhere to see the traceback instead.
"""


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


def cmd_fit(args: argparse.Namespace) -> int:
    from .run import fit_run

    data, packaged_test = load_data(args.data, args)
    test = packaged_test
    if args.test:
        test, _ = load_data(args.test, args)
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
        record={"data": _where(args.data), "test": _where(args.test), **_data_record(args)},
        overwrite=args.overwrite,
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

    data, packaged_test = load_data(args.data, args)
    test = packaged_test
    if args.test:
        test, _ = load_data(args.test, args)
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
        test_rows=args.test_rows,
        test_size=args.test_size,
        split_seed=args.split_seed,
        **runtime_params(args),
    )
    run_study(
        data,
        cfg,
        args.output,
        test=test,
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


def _check_predict_output(out: Path, artifact: Path, inputs: Path) -> None:
    """Predictions never overwrite their own input, anything inside the artifact, or a folder."""
    target = out.resolve()
    if target == inputs.resolve() or inputs.resolve() in target.parents:
        raise DataError(
            f"--output {out}: that is the input being predicted on; write the predictions elsewhere."
        )
    if artifact.resolve() == target or artifact.resolve() in target.parents:
        raise DataError(
            f"--output {out}: inside the artifact {artifact}, which must stay as saved; write elsewhere."
        )
    if out.is_dir():
        raise DataError(f"--output {out}: is a folder; give a file name ending in .csv or .json.")
    from .artifact import check_writable

    check_writable(out)


def cmd_predict(args: argparse.Namespace) -> int:
    from .artifact import load_artifact
    from .predict import prediction_table

    if args.output:
        _check_predict_output(Path(args.output), Path(args.artifact), Path(args.inputs))
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


def _runtime_options(p: argparse.ArgumentParser, precision: bool = True) -> None:
    g = p.add_argument_group("device and precision (docs/scaling.md)")
    g.add_argument(
        "--device",
        default="auto",
        help="auto (a CUDA GPU if there is one, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps",
    )
    if not precision:
        return
    g.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "fp16"],
        default=None,
        help="auto (default: bf16 where the GPU or CPU computes it natively, else fp32), fp32, bf16, or fp16 "
        "(training with a gradient scaler); feature extraction and training alike",
    )
    g.add_argument("--bf16", action="store_true", help="the same as --precision bf16")
    g.add_argument("--fp32", action="store_true", help="the same as --precision fp32")


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


def _budget_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("limits for --technique auto / recommend")
    g.add_argument("--budget", help="CPU time the training may take, e.g. 90s, 5m, 1h (default: none)")
    g.add_argument("--max-params", help="most trainable parameters, e.g. 500k or 2M (default: none)")
    g.add_argument("--max-memory", type=float, help="most peak resident memory in MB (default: none)")


def cmd_rank(args: argparse.Namespace) -> int:
    from ._io import atomic_write_json
    from .data import few_shot
    from .features import FeatureCache
    from .selection import ALL_SCORES, rank_backbones

    data, _ = load_data(args.data, args)
    if args.shots:
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
    )
    return 0


def _data_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("columns and decoding")
    g.add_argument(
        "--text-col",
        help="column holding the text, or the images of a Hugging Face data set (default: text, sentence, "
        "content, ...; image, img, ...)",
    )
    g.add_argument("--label-col", help="column holding the label (default: label, category, class, ...)")
    g.add_argument(
        "--label-sep",
        help="multi-label data: the label cell holds several labels separated by this, e.g. '|' "
        "(predictions are written joined by it; default '|')",
    )
    g.add_argument("--encoding", default="utf-8", help="text file encoding (default: utf-8)")
    g.add_argument("--drop-empty", action="store_true", help="skip rows with an empty text or label")
    g.add_argument(
        "--split",
        help="Hugging Face data set (a save_to_disk folder or hf:NAME): the split to train on (default: train; "
        "its test split, when there is one, is the test data)",
    )


def _parser_fit(sub: Any) -> None:

    p = sub.add_parser(
        "fit",
        help="train a classifier and save it as an artifact folder",
        description="Train on labelled data, test it, and save one artifact folder.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="CSV/TSV/JSONL/Parquet file, image folder (one sub-folder per class), Hugging Face data set "
        "(save_to_disk folder or hf:NAME) or packaged data set name",
    )
    p.add_argument(
        "--test", help="separate test data (default: the packaged test split, or a held-out split)"
    )
    p.add_argument("--backbone", default="all-MiniLM-L6-v2", help="registered name, local folder or hub id")
    p.add_argument(
        "--technique",
        default="probe",
        help="probe, finetune, lora, ia3, bitfit, lp_ft, l2sp, contrastive, scratch, or auto: the best "
        "expected accuracy that fits --budget, measured by short calibration fits (default: probe); "
        "`warmstart techniques` describes them",
    )
    p.add_argument("--shots", type=int, help="train on K examples per class (few-shot)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-size", type=float, default=0.1, help="validation fraction (ignored with --shots)")
    p.add_argument("--test-size", type=float, default=0.2, help="test fraction when there is no --test")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="technique hyperparameter, e.g. --param C=0.1 (repeatable)",
    )
    _runtime_options(p)
    p.add_argument(
        "--embed-backbone", action="store_true", help="copy the backbone weights into the artifact"
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --output even when it is not a warmstart artifact (its files are deleted)",
    )
    p.add_argument("--cache-dir", help="feature cache folder (default: $WARMSTART_HOME/features)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--output", "-o", required=True, help="artifact folder to write")
    _budget_options(p)
    _data_options(p)
    p.set_defaults(func=cmd_fit)


def _parser_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="predict with a saved artifact",
        description="Predict labels and class probabilities for new inputs.",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("inputs", help="text file (CSV/TSV/JSONL/Parquet/TXT), image file or image folder")
    p.add_argument("--output", "-o", help="write predictions here (.csv or .json); default: stdout as CSV")
    p.add_argument("--format", choices=["csv", "json"], help="output format (default: from --output suffix)")
    p.add_argument(
        "--tta",
        action="store_true",
        help="images, trained techniques: average over the image, a zoomed crop and their mirror images "
        "(mirrors only if trained with hflip)",
    )
    _data_options(p)
    _runtime_options(p, precision=False)
    p.set_defaults(func=cmd_predict)


def _parser_study(sub: Any) -> None:
    p = sub.add_parser(
        "study",
        help="techniques x examples per class x seeds on identical splits: learning curves, CIs, costs, report",
        description="Run every (technique, shots, seed) cell on the same splits (resumable: finished cells are "
        "kept), then write results.csv/.parquet/.json, summary.json (means, 95% CIs, paired comparisons "
        "against scratch and probe) and report.html.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="labelled file, image folder, Hugging Face data set (folder or hf:NAME) or packaged name",
    )
    p.add_argument(
        "--test", help="separate test data (default: the packaged test split, or a held-out split)"
    )
    p.add_argument("--backbone", default="all-MiniLM-L6-v2")
    p.add_argument("--techniques", default="scratch,probe,lora,finetune", help="comma-separated")
    p.add_argument(
        "--shots", default="4,8,16,64,all", help="examples per class, comma-separated; 'all' = every row"
    )
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--test-rows", type=int, help="test on a stratified sample of at most this many rows")
    p.add_argument(
        "--test-size", type=float, default=0.2, help="held-out fraction when there is no test split"
    )
    p.add_argument(
        "--split-seed", type=int, default=0, help="seed of the pool/test split (same for every cell)"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="TECHNIQUE.KEY=VALUE",
        help="a technique's hyperparameter, e.g. --param finetune.epochs=3 (repeatable)",
    )
    _runtime_options(p)
    p.add_argument("--output", "-o", required=True, help="study folder (rerun the same command to resume)")
    p.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="run cells here, or as Ray tasks (ray)"
    )
    p.add_argument(
        "--ray-address", help="Ray cluster to use (default: RAY_ADDRESS, else a local Ray instance)"
    )
    p.add_argument("--cpus-per-cell", type=int, default=1, help="CPUs (and torch threads) per Ray task (1)")
    _data_options(p)
    p.set_defaults(func=cmd_study)


def _parser_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild the HTML report of a study folder or an artifact from its saved results",
        description="Write report.html from saved results alone (no training).",
    )
    p.add_argument("path", help="a study folder (warmstart study --output) or an artifact folder")
    p.add_argument(
        "--output", "-o", help="HTML file to write (default: STUDY/report.html, ARTIFACT-report.html)"
    )
    p.set_defaults(func=cmd_report)


def _parser_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export an artifact to ONNX or a transformers folder, checked on held-out rows",
        description="--onnx: the whole pipeline (backbone with merged adapter, head, probabilities) as ONNX, "
        "with the tokenizer or image preprocessing beside it. --transformers (text models): an AutoModel "
        "folder plus the head as one linear layer, loadable without warmstart. Either export is kept only if "
        "its probabilities match the artifact's on held-out rows (max abs difference <= --atol, same top "
        "class on every row).",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("--onnx", action="store_true", help="export to ONNX")
    p.add_argument(
        "--transformers",
        action="store_true",
        help="export a text model as a transformers folder (AutoModel + linear head; default output "
        "ARTIFACT-transformers)",
    )
    p.add_argument("--int8", action="store_true", help="also write a dynamically int8-quantised model")
    p.add_argument(
        "--test",
        help="held-out rows to check on (file, folder or packaged name; default: the artifact's own test rows)",
    )
    p.add_argument("--output", "-o", help="export folder (default: ARTIFACT-onnx beside the artifact)")
    p.add_argument("--atol", type=float, default=1e-4, help="largest allowed probability difference (1e-4)")
    p.add_argument("--max-rows", type=int, default=2000, help="check on at most this many held-out rows")
    _data_options(p)
    p.set_defaults(func=cmd_export)


def _parser_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an artifact over HTTP (/predict, /health, /info)",
        description="FastAPI + uvicorn server for one artifact, with request batching and input limits.",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, loopback)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-body-bytes", type=int, default=2_000_000, help="largest request body (2000000)")
    p.add_argument("--max-inputs", type=int, default=64, help="most texts or images in one request (64)")
    p.add_argument("--max-text-chars", type=int, default=10_000, help="longest text in characters (10000)")
    p.add_argument(
        "--max-image-pixels",
        type=int,
        help="most pixels in one image (default 4096*4096, or WARMSTART_MAX_IMAGE_PIXELS if lower)",
    )
    p.add_argument("--max-batch-rows", type=int, default=64, help="most rows run through the model at once")
    p.add_argument(
        "--batch-wait-ms", type=float, default=2.0, help="how long a batch waits for more requests (2 ms)"
    )
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads for the model (default: all cores; 1 can be faster when the host is shared)",
    )
    _runtime_options(p, precision=False)
    p.set_defaults(func=cmd_serve)


def _parser_rank(sub: Any) -> None:
    p = sub.add_parser(
        "rank",
        help="rank candidate backbones for a data set by transferability scores (no training)",
        description="Score each backbone's (cached) features on the labelled data and rank them.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="labelled file, image folder, Hugging Face data set (folder or hf:NAME) or packaged name",
    )
    p.add_argument(
        "--backbones",
        required=True,
        help="comma-separated backbones; variants like all-MiniLM-L6-v2:num_layers=2 or NAME:init=random",
    )
    p.add_argument(
        "--scores",
        help="comma-separated subset of logme,knn,hscore,leep,nleep,ridge_loo,probe_cv (default: all)",
    )
    p.add_argument(
        "--primary",
        help="the score that orders the table (default: ridge_loo if computed, else the first score)",
    )
    p.add_argument(
        "--shots", type=int, help="score on K examples per class, as a few-shot run would train on"
    )
    p.add_argument("--max-rows", type=int, default=3000, help="stratified sample of at most this many rows")
    p.add_argument(
        "--resamples", type=int, default=20, help="row subsamples for the stability of the top pick"
    )
    p.add_argument("--seed", type=int, default=0)
    _runtime_options(p)
    p.add_argument("--cache-dir", help="feature cache folder (default: $WARMSTART_HOME/features)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--json", help="also write the ranking to this JSON file")
    _data_options(p)
    p.set_defaults(func=cmd_rank)


def _parser_recommend(sub: Any) -> None:
    p = sub.add_parser(
        "recommend",
        help="measure each technique's cost on the data and recommend the best one that fits a budget",
        description="Short calibration fits per candidate technique, best expected accuracy first; the first "
        "whose predicted CPU time, trainable parameters and memory fit the limits is recommended.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="labelled file, image folder, Hugging Face data set (folder or hf:NAME) or packaged name",
    )
    p.add_argument("--backbone", default="all-MiniLM-L6-v2")
    p.add_argument("--shots", type=int, help="the fit will use K examples per class")
    p.add_argument(
        "--candidates", help="comma-separated techniques to consider, in order (default: by data size)"
    )
    p.add_argument("--seed", type=int, default=0)
    _runtime_options(p)
    _budget_options(p)
    _data_options(p)
    p.set_defaults(func=cmd_recommend)


def _parser_push(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="upload an artifact to a Hugging Face hub model repository (its README.md is the model card)",
        description="Upload every file of an artifact, hash-checked first, to a hub model repository in one "
        "commit (the repository is created when missing). The token comes from HF_TOKEN or `hf auth login`; "
        "HF_ENDPOINT points at another hub.",
    )
    p.add_argument("artifact", help="artifact folder written by `warmstart fit`")
    p.add_argument("repo_id", help="NAME or ORG/NAME")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--message", help="commit message (default: Upload warmstart artifact NAME)")
    p.set_defaults(func=cmd_push)


def _parser_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="20 Newsgroups few-shot: MiniLM-L6 + probe vs TF-IDF + LR",
        description="Few-shot 20 Newsgroups on packaged data, against a TF-IDF baseline.",
    )
    p.add_argument("--shots", default="8,64", help="comma-separated examples per class (default: 8,64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backbone", default="all-MiniLM-L6-v2")
    _runtime_options(p)
    p.add_argument("--output", default="runs/demo", help="where the demo's artifacts go (default: runs/demo)")
    p.set_defaults(func=cmd_demo)


def _parser_listings(sub: Any) -> None:
    """The commands that list or tidy what is installed: clean, backbones, techniques, datasets."""
    p = sub.add_parser(
        "clean", help="list (or remove) checkpoints of interrupted runs that were never resumed"
    )
    p.add_argument("--older-than", type=float, default=24.0, help="hours since last written (default: 24)")
    p.add_argument("--remove", action="store_true", help="delete them")
    p.add_argument("--checkpoint-dir", help="default: $WARMSTART_HOME/checkpoints")
    p.set_defaults(func=cmd_clean)
    p = sub.add_parser("backbones", help="list registered backbones")
    p.set_defaults(func=cmd_backbones)
    p = sub.add_parser("techniques", help="list techniques (and their parameters with -v)")
    p.add_argument("-v", "--verbose", action="store_true", help="show every parameter and its default")
    p.set_defaults(func=cmd_techniques)
    p = sub.add_parser("datasets", help="list packaged real data sets")
    p.set_defaults(func=cmd_datasets)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmstart",
        description="Transfer learning for text and images.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"warmstart {__import__('warmstart').__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _parser_fit(sub)
    _parser_predict(sub)
    _parser_study(sub)
    _parser_report(sub)
    _parser_export(sub)
    _parser_serve(sub)
    _parser_rank(sub)
    _parser_recommend(sub)
    _parser_push(sub)
    _parser_listings(sub)
    _parser_demo(sub)
    return parser


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
        return args.func(args)
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
