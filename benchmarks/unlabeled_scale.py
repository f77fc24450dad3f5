"""Memory and time of self-training on many unlabelled rows: 10,000 against 100,000.

Builds a text file of up to 100,000 distinct unlabelled rows from the packaged text sets (sentences of BBC news,
Reuters R52, TREC, SMS, VADER; 25-word chunks of 20 Newsgroups), then runs
``warmstart fit --technique self_train:probe`` on VADER movie reviews (16 per class) with the first N of them,
each in a fresh process with an empty feature cache, and reports the peak resident memory and the wall time.

With ``--loader``, only the loading: the first N rows (the list repeated to reach N) written as a CSV (or with
``--format parquet`` a Parquet file, row groups of pyarrow's default size; ``--format json`` one JSON array of
objects; ``--format json-columns`` a table of columns as pandas' ``to_json()`` writes it) with a label column, then read as ``--unlabeled`` reads them (``load_unlabeled``: streamed, ``data/stream.py``) and as
the whole-file loader reads them (``load_text``), each in a fresh process that then reads every row once in
chunks of 4,096 (as self-training predicts them): resident memory held after loading and its peak over both,
above what the process held before (Linux: ``/proc/self/clear_refs``), and the time.

    python benchmarks/unlabeled_scale.py --rows 10000,100000
    python benchmarks/unlabeled_scale.py --loader --rows 100000,1000000
    python benchmarks/unlabeled_scale.py --loader --rows 100000,1000000 --format parquet
    python benchmarks/unlabeled_scale.py --loader --rows 100000,1000000 --format json
    python benchmarks/unlabeled_scale.py --loader --rows 100000,1000000 --format json-columns

With ``--distill``, ``warmstart distill`` instead: a probe teacher (``--backbone`` on VADER movie reviews, 16 per
class, fitted once) distilled into the default static student over the first N rows as ``--unlabeled`` (a CSV
file), each run in a fresh process with an empty feature cache: peak resident memory and wall time. Run it with
``PYTHONPATH=<another checkout>/src`` to measure that code's ``warmstart`` the same way.

    python benchmarks/unlabeled_scale.py --distill --rows 10000,100000
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCE_SETS = [
    "reuters-r52",
    "bbc-news",
    "trec-fine",
    "sms-spam",
    "vader-amazon",
    "vader-tweets",
    "vader-nyt",
]


def build_rows(limit: int) -> list[str]:
    from warmstart.data import load_packaged

    rows: list[str] = []
    seen: set[str] = set()

    def add(s: str) -> None:
        if s not in seen:
            seen.add(s)
            rows.append(s)

    for name in SENTENCE_SETS:
        p = load_packaged(name)
        for t in [*p.train.inputs, *(p.test.inputs if p.test is not None else [])]:
            for s in re.split(r"(?<=[.!?])\s+", str(t)):
                s = " ".join(s.split())
                if 20 <= len(s) <= 400:
                    add(s)
    p = load_packaged("20newsgroups")
    for t in [*p.train.inputs, *(p.test.inputs if p.test is not None else [])]:
        words = str(t).split()
        for i in range(0, len(words), 25):
            s = " ".join(words[i : i + 25])
            if len(s) >= 40:
                add(s)
        if len(rows) >= limit:
            break
    return rows[:limit]


LOADER = """
import sys, time
from warmstart.data.load import load_unlabeled
from warmstart.data.text import load_text

def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))

open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here (Linux)
base = status("VmRSS:")
start = time.perf_counter()
rows = load_unlabeled(sys.argv[2], "text") if sys.argv[1] == "stream" else load_text(sys.argv[2], None, None, require_labels=False)
loaded = time.perf_counter() - start
held = status("VmRSS:") - base
chars = sum(len(t) for s in range(0, len(rows), 4096) for t in rows.subset(range(s, min(s + 4096, len(rows)))).inputs)
print(len(rows), chars, (status("VmHWM:") - base) / 1024, loaded, time.perf_counter() - start, held / 1024)
"""


def loader(rows: list[str], counts: list[int], fmt: str = "csv") -> None:
    """Peak memory and time of loading N unlabelled rows streamed against whole (see the module's docstring)."""
    print(f"| rows ({fmt}) | loader | held after loading, MB | peak, MB | load s | load + one pass s |")
    print("|---|---|---|---|---|---|")
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"unlabeled.{fmt.split('-')[0]}"
            if fmt == "parquet":
                import pyarrow as pa
                import pyarrow.parquet as pq

                texts = [rows[i % len(rows)] for i in range(n)]
                pq.write_table(pa.table({"text": texts, "label": [i % 2 for i in range(n)]}), path)
                del texts
            elif fmt == "json":  # one array of objects, an object a line
                import json

                with open(path, "w") as f:
                    f.write("[\n")
                    for i in range(n):
                        rec = json.dumps({"text": rows[i % len(rows)], "label": i % 2}, ensure_ascii=False)
                        f.write(rec + (",\n" if i < n - 1 else "\n"))
                    f.write("]\n")
            elif fmt == "json-columns":  # {"text": {"0": ..., ...}, "label": {"0": 0, ...}}, as pandas writes
                import json

                with open(path, "w") as f:
                    f.write('{"text":{')
                    for i in range(n):
                        text = json.dumps(rows[i % len(rows)], ensure_ascii=False)
                        f.write(f'"{i}":{text}' + ("," if i < n - 1 else ""))
                    f.write('},"label":{' + ",".join(f'"{i}":{i % 2}' for i in range(n)) + "}}")
            else:
                with open(path, "w") as f:
                    f.write("text,label\n")
                    for i in range(n):
                        f.write('"' + rows[i % len(rows)].replace('"', '""') + f'",{i % 2}\n')
            for how in ("stream", "whole"):
                out = subprocess.run(
                    [sys.executable, "-c", LOADER, how, str(path)], check=True, capture_output=True, text=True
                ).stdout.split()
                held, peak, load, total = float(out[5]), float(out[2]), float(out[3]), float(out[4])
                print(f"| {n:,} | {how} | {held:,.0f} | {peak:,.0f} | {load:.1f} | {total:.1f} |", flush=True)


def distill(rows: list[str], counts: list[int], backbone: str) -> None:
    """Peak memory and time of ``warmstart distill`` over N unlabelled rows (see the module's docstring)."""
    exe = str(Path(sys.executable).parent / "warmstart")
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Path(tmp) / "teacher"
        env = {**os.environ, "WARMSTART_HOME": str(Path(tmp) / "home-teacher")}
        subprocess.run(
            [
                exe,
                "fit",
                "--data",
                "vader-movie",
                "--shots",
                "16",
                "--backbone",
                backbone,
                "--output",
                str(teacher),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        print("| unlabelled rows | peak RSS, MB | wall s | student keeps |")
        print("|---|---|---|---|")
        for n in counts:
            path = Path(tmp) / f"unlabeled-{n}.csv"
            with open(path, "w") as f:
                f.write("text\n")
                for i in range(n):
                    f.write('"' + rows[i % len(rows)].replace('"', '""') + '"\n')
            cmd = [
                exe,
                "distill",
                str(teacher),
                "--student",
                "static",
                "--unlabeled",
                str(path),
                "--no-speed",
            ]
            cmd += ["--output", str(Path(tmp) / f"student-{n}")]
            env = {**os.environ, "WARMSTART_HOME": str(Path(tmp) / f"home-{n}")}
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            wall = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            note = (
                "" if peak > before else " (no higher than an earlier run: give the counts in rising order)"
            )
            keeps = re.search(r"student keeps [^;\n]*", out)
            print(
                f"| {n:,} | {peak / 1024:,.0f}{note} | {wall:.0f} | {keeps.group(0) if keeps else ''} |",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="10000,100000")
    ap.add_argument("--backbone", default="paraphrase-MiniLM-L3-v2")
    ap.add_argument("--loader", action="store_true", help="measure loading only, streamed against whole")
    ap.add_argument(
        "--format",
        choices=("csv", "parquet", "json", "json-columns"),
        default="csv",
        help="the file --loader writes",
    )
    ap.add_argument(
        "--distill", action="store_true", help="measure `warmstart distill` over the rows instead"
    )
    args = ap.parse_args()
    counts = [int(n) for n in args.rows.split(",")]
    rows = build_rows(max(counts))
    if args.loader:
        loader(rows, counts, args.format)
        return
    if args.distill:
        distill(rows, counts, args.backbone)
        return
    print(
        f"| unlabelled rows | peak RSS, MB | wall s | (rows built: {len(rows):,}, mean {sum(map(len, rows)) / len(rows):.0f} chars) |"
    )
    print("|---|---|---|---|")
    for n in counts:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "unlabeled.txt"
            path.write_text("\n".join(rows[:n]) + "\n")
            cmd = [
                str(Path(sys.executable).parent / "warmstart"),
                "fit",
                "--data",
                "vader-movie",
                "--shots",
                "16",
            ]
            cmd += ["--technique", "self_train:probe", "--unlabeled", str(path), "--backbone", args.backbone]
            cmd += ["--output", str(Path(tmp) / "model")]
            env = {**os.environ, "WARMSTART_HOME": str(Path(tmp) / "home")}
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            note = (
                ""
                if peak > before
                else " (no higher than an earlier, larger run: run the counts in rising order)"
            )
            print(f"| {min(n, len(rows)):,} | {peak / 1024:,.0f}{note} | {wall:.0f} | |", flush=True)


if __name__ == "__main__":
    main()
