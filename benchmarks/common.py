"""What a benchmark row is keyed by: the code version it was measured on (with every parameter, in each script)."""

from __future__ import annotations

import subprocess
from pathlib import Path


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
