"""What the benchmarks share: the code version their rows are keyed by (with every parameter, in each script),
and the fixed split of a packaged data set into a training pool and a test sample."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np


def code_version() -> str:
    """The commit of the code being measured, marked ``-dirty`` when ``src`` or ``benchmarks`` differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src", "benchmarks"],
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


def packaged_split(name: str, test_rows: int, test_size: float = 0.2) -> tuple:
    """A packaged data set's training pool and test rows: its own test split, else a stratified ``test_size`` of
    it (seed 0), cut to a stratified ``test_rows`` sample (0: all); the same for every seed and method."""
    from warmstart.data import load_packaged, stratified_split

    pk = load_packaged(name)
    pool, test = pk.train, pk.test
    if test is None:
        s = stratified_split(pool.labels, val_size=0.0, test_size=test_size, seed=0)
        pool, test = pool.subset(s.train), pool.subset(s.test)
    if test_rows and test_rows < len(test):
        keep = stratified_split(test.labels, val_size=0.0, test_size=test_rows / len(test), seed=0).test
        test = test.subset(np.sort(keep))
    return pool, test


def summary_options(ap) -> None:
    """``--summary-only`` and ``--code``: print the table from the saved rows, of this or another code version."""
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument(
        "--code", help="with --summary-only: summarise the rows of this code version (default: this one)"
    )


def rows_version(ap, args) -> str:
    """The code version whose rows to run or read (``--code`` goes with ``--summary-only`` only)."""
    if args.code and not args.summary_only:
        ap.error("--code reads rows of another version; it goes with --summary-only")
    return args.code or code_version()


def key_values(items: list[str]) -> dict:
    """``KEY=VALUE`` options (``--param``) as a dict: numbers and true/false parsed as JSON, the rest strings."""
    import json

    out = {}
    for item in items:
        k, v = item.split("=", 1)
        out[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
    return out


def keyed_rows(path: Path) -> dict:
    """The rows already in a JSON-lines results file, by their ``key`` (none when the file does not exist yet);
    makes the file's folder."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file():
        return {}
    return {row["key"]: row for row in map(json.loads, path.read_text().splitlines())}
