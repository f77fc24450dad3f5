"""The `warmstart` command line: a thin layer over the library.

The parser is ``cli_args``; the commands live in ``cli_train`` (fit, study, report, forecast, suggest, adapt,
distill), ``cli_ship`` (export, serve, predict, push) and here (rank, recommend, the listings, clean, the demo),
with what they share in ``cli_common``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_args import build_parser
from .cli_common import load_data, runtime_params
from .cli_ship import cmd_export, cmd_predict, cmd_push, cmd_serve
from .cli_train import cmd_adapt, cmd_distill, cmd_fit, cmd_forecast, cmd_report, cmd_study, cmd_suggest
from .errors import WarmstartError


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
        max_per_class=args.max_per_class or None,
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
