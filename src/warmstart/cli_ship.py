"""The commands that ship a fitted model: export, serve, predict, push."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_common import columns
from .errors import DataError, ParameterError


def cmd_export(args: argparse.Namespace) -> int:
    if not (args.onnx or args.transformers):
        raise ParameterError("say which format to export to: --onnx, --transformers, or both.")
    if args.onnx and args.transformers and args.output:
        raise ParameterError("--output names one folder; export one format at a time when you give it.")
    from .artifact import held_out, verify_artifact

    artifact = Path(args.artifact)
    verify_artifact(artifact)
    rows = held_out(artifact, args.test, columns(args))
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

    data = load_inputs(args.inputs, model.backbone_.modality, columns(args))
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


def cmd_push(args: argparse.Namespace) -> int:
    from .push import push_artifact

    url = push_artifact(args.artifact, args.repo_id, private=args.private, commit_message=args.message)
    print(f"pushed {args.artifact} to {args.repo_id}: {url}")
    return 0
