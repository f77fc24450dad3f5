"""Mutation testing, one module at a time: how many deliberately broken versions of a module the tests catch.

    python scripts/mutation.py splits            # one named target (see TARGETS)
    python scripts/mutation.py all               # every target in turn
    python scripts/mutation.py --module src/warmstart/x.py --tests tests/test_x.py

mutmut (a dev extra) makes each mutant (a changed operator, constant, argument or return value inside a function)
and runs the tests that reach that function against it. A mutant is *killed* when a test fails (or times out) and
*survives* when every test passes; one that no selected test reaches counts as surviving too. The score is
killed / all. Work happens in a copy of src/ and tests/ under .mutation/<target>/, so the checkout is never
changed. docs/development.md records the scores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# target: (the module mutated, the tests run against it). The modules are those where a silent bug costs most.
TARGETS: dict[str, tuple[str, list[str]]] = {
    "splits": ("src/warmstart/data/splits.py", ["tests/test_data.py", "tests/test_splits.py"]),
    "feature-cache": ("src/warmstart/features.py", ["tests/test_features.py"]),
    "artifact": ("src/warmstart/artifact.py", ["tests/test_artifact_checks.py"]),
    "study-stats": ("src/warmstart/study_stats.py", ["tests/test_study_stats.py"]),
    "loop": ("src/warmstart/techniques/train.py", ["tests/test_train_loop.py"]),
    "stream": ("src/warmstart/data/stream.py", ["tests/test_stream.py"]),
    "domain": ("src/warmstart/techniques/domain.py", ["tests/test_domain.py", "tests/test_selftrain.py"]),
}
DETECTED = {"killed", "timeout"}


def _config(module: str, tests: list[str]) -> str:
    """mutmut's setup.cfg: mutate ``module`` only (the rest of the package is copied unchanged)."""
    # torch is not fork-safe once its thread pools run: each mutant is forked from a clean server process
    lines = [
        "[mutmut]",
        "source_paths=src/warmstart/",
        f"only_mutate={module}",
        "process_isolation=forkserver",
    ]
    lines += ["pytest_add_cli_args_test_selection="] + [f"    {t}" for t in tests]
    lines += ["pytest_add_cli_args=", "    -p", "    no:cacheprovider", "    -q"]
    return "\n".join(lines) + "\n"


def run(name: str, module: str, tests: list[str], max_children: int, show: int) -> tuple[int, int]:
    missing = [t for t in [module, *tests] if not (ROOT / t).exists()]
    if missing:
        raise SystemExit(f"{name}: no such file {missing[0]}")
    work = ROOT / ".mutation" / name
    work.mkdir(parents=True, exist_ok=True)
    for part in ("src", "tests"):  # a fresh copy of the code, keeping mutmut's own results folder
        shutil.rmtree(work / part, ignore_errors=True)
        shutil.copytree(ROOT / part, work / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", work / "pyproject.toml")
    (work / "setup.cfg").write_text(_config(module, tests))
    mutmut = [sys.executable, "-m", "mutmut"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore::UserWarning", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # each mutant's process would compile every module again
    log = work / "run.log"
    with open(log, "w") as f:
        done = subprocess.run(
            [*mutmut, "run", "--max-children", str(max_children)], cwd=work, stdout=f, stderr=f, env=env
        )
    if done.returncode != 0:
        raise SystemExit(f"{name}: mutmut failed (exit {done.returncode}); see {log}")
    out = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=work, capture_output=True, text=True, env=env, check=True
    ).stdout
    status = {}
    for line in out.splitlines():
        if ": " in line:
            mutant, state = line.strip().rsplit(": ", 1)
            status[mutant] = state
    counts = Counter(status.values())
    killed = sum(counts[s] for s in DETECTED)
    total = sum(counts.values())
    score = 100 * killed / total if total else float("nan")
    detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    print(f"{name:14s} {module:40s} {killed:4d}/{total:<4d} killed = {score:5.1f}%   ({detail})", flush=True)
    survivors = [m for m, s in status.items() if s not in DETECTED]
    for m in survivors[:show]:
        diff = subprocess.run([*mutmut, "show", m], cwd=work, capture_output=True, text=True, env=env).stdout
        print(f"\n--- {m} ({status[m]})\n" + "\n".join(ln for ln in diff.splitlines() if ln[:1] in "+-"))
    return killed, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", nargs="?", help=f"one of {', '.join(TARGETS)}, or all")
    ap.add_argument("--module", help="a module to mutate instead of a named target")
    ap.add_argument("--tests", nargs="+", help="the test files run against --module")
    ap.add_argument("--max-children", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--show", type=int, default=0, help="print the diffs of this many surviving mutants")
    ap.add_argument("--min-score", type=float, help="exit 1 when a target's score is below this percentage")
    args = ap.parse_args()
    if args.module:
        jobs = {Path(args.module).stem: (args.module, args.tests or ["tests"])}
    elif args.target == "all":
        jobs = TARGETS
    elif args.target in TARGETS:
        jobs = {args.target: TARGETS[args.target]}
    else:
        ap.error(f"give a target ({', '.join(TARGETS)}, all) or --module")
    low = False
    for name, (module, tests) in jobs.items():
        killed, total = run(
            name, module, [t for t in tests if (ROOT / t).exists()], args.max_children, args.show
        )
        low |= args.min_score is not None and total > 0 and 100 * killed / total < args.min_score
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
