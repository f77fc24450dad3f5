"""What the command-line commands share: reading --data and its options, --param, and the runtime flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .errors import ParameterError


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def columns(args: argparse.Namespace) -> Any:
    """The data options of a command (``--text-col``, ``--label-col``, ...) as ``data.load.Columns``."""
    from .data.load import Columns

    opts = {k: getattr(args, k, None) for k in DATA_OPTIONS}
    return Columns(
        **{**opts, "encoding": opts["encoding"] or "utf-8", "drop_empty": bool(opts["drop_empty"])}
    )


def load_data(spec: str, args: argparse.Namespace, require_labels: bool = True):
    """``--data``/``--test`` -> (data, its own test split or None), read by ``data.load.load``."""
    from .data.load import load

    return load(spec, columns(args), require_labels)


def data_and_test(args: argparse.Namespace) -> tuple[Any, Any]:
    """--data, and --test (else the data set's own test split, or None)."""
    data, test = load_data(args.data, args)
    if args.test:
        test, _ = load_data(args.test, args)
    return data, test


def fit_params(args: argparse.Namespace) -> dict[str, Any]:
    """The technique's parameters: every --param KEY=VALUE (JSON values), then the runtime and cache options."""
    params = {}
    for kv in args.param:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise ParameterError(f"--param {kv!r} is not KEY=VALUE; write it like --param C=0.1.")
        params[key] = parse_value(value)
    params.update({k: v for k, v in runtime_params(args).items() if k not in params})
    if args.cache_dir:
        params.setdefault("cache_dir", args.cache_dir)
    if args.no_cache:
        params["use_cache"] = False
    return params


DATA_OPTIONS = ("text_col", "label_col", "encoding", "drop_empty", "label_sep", "split")


def where(spec: str | None) -> str | None:
    """A data path as an absolute path (so an artifact finds its data from any folder); names pass through."""
    if spec is None or not Path(spec).exists():
        return spec
    return str(Path(spec).resolve())


def data_record(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in DATA_OPTIONS}


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
