"""Students of ``benchmarks/distill.py`` against one of them, paired over data sets and seeds, from its rows.

For every data set and seed the latest row of each student (same teacher, labelled rows per class and unlabelled
rows) is taken from ``--input``; the table gives each student's mean accuracy per data set, and its difference
from ``--against`` paired over the (data set, seed) runs where both ran: the mean with a 95% t-interval, and how
many runs it was ahead, level and behind; and what it kept of the teacher's accuracy (its mean accuracy over the
teacher's, over the same runs). The code versions the rows came from are printed with them: rows of
different versions are compared only where the student's code is the same between them (say so in the docs).

    python benchmarks/distill_compare.py --data sms-spam,reuters-r8,bbc-news --seeds 0,1,2,3,4 \\
        --students static-probe-pieces,static-probe-words,static --against m2v-pseudo
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats


def latest(rows: list[dict], teacher: str, shots: int, unlabeled: int | None) -> dict:
    """(data, seed, student) -> the last row in file order for that teacher, label count and unlabelled rows."""
    out = {}
    for r in rows:
        if r.get("teacher") != teacher or r.get("shots") != shots:
            continue
        if unlabeled is not None and r.get("unlabeled") != unlabeled:
            continue
        out[(r["data"], r["seed"], r["student"])] = r
    return out


def paired(diffs: list[float]) -> str:
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2:
        return f"{d.mean():+.2f}" if len(d) else "-"
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.2f} [{d.mean() - half:+.2f}, {d.mean() + half:+.2f}]"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default="runs/bench/distill.jsonl")
    ap.add_argument("--data", required=True)
    ap.add_argument("--seeds", required=True)
    ap.add_argument("--students", required=True)
    ap.add_argument("--against", required=True)
    ap.add_argument("--teacher", default="all-MiniLM-L6-v2")
    ap.add_argument("--shots", type=int, default=64)
    ap.add_argument("--unlabeled", type=int, help="only rows with this many unlabelled rows (default: any)")
    args = ap.parse_args(argv)
    path = Path(args.input)
    if not path.is_file():
        raise SystemExit(f"{path}: no such file; run benchmarks/distill.py first.")
    rows = latest([json.loads(line) for line in path.open()], args.teacher, args.shots, args.unlabeled)
    data_sets, seeds = args.data.split(","), [int(s) for s in args.seeds.split(",")]
    students = [*args.students.split(","), args.against]
    missing = [
        f"{d} seed {s} {st}" for d in data_sets for s in seeds for st in students if (d, s, st) not in rows
    ]
    if missing:
        print(f"not run (left out of the table): {', '.join(missing)}")
    teacher = {
        ds: np.mean(t)
        for ds in data_sets
        if (t := [100 * r["teacher_accuracy"] for (d, s, _), r in rows.items() if d == ds and s in seeds])
    }
    print("teacher (mean over the rows' seeds): " + ", ".join(f"{d} {t:.2f}" for d, t in teacher.items()))
    head = ["student", *data_sets, "mean", "kept", f"minus {args.against}", "ahead / level / behind", "codes"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for st in students:
        cells, diffs, codes, kept = [], [], set(), []
        for d in data_sets:
            accs = [100 * rows[(d, s, st)]["accuracy"] for s in seeds if (d, s, st) in rows]
            kept += [rows[(d, s, st)]["accuracy"] / rows[(d, s, st)]["teacher_accuracy"] for s in seeds
                     if (d, s, st) in rows]  # fmt: skip
            cells.append(f"{np.mean(accs):.2f} ({len(accs)})" if accs else "-")
            for s in seeds:
                if (d, s, st) in rows:
                    codes.add(rows[(d, s, st)]["code"])
                    if st != args.against and (d, s, args.against) in rows:
                        a, b = rows[(d, s, st)]["accuracy"], rows[(d, s, args.against)]["accuracy"]
                        diffs.append(round(100 * (a - b), 6))
        means = [float(c.split()[0]) for c in cells if c != "-"]
        counts = (
            f"{sum(x > 0 for x in diffs)} / {sum(x == 0 for x in diffs)} / {sum(x < 0 for x in diffs)}"
            if diffs
            else ""
        )
        line = [
            st,
            *cells,
            f"{np.mean(means):.2f}" if means else "-",
            f"{100 * np.mean(kept):.1f}% (lowest {100 * min(kept):.1f}%)" if kept else "-",
            paired(diffs) if diffs else "",
            counts,
        ]
        print("| " + " | ".join([*line, ", ".join(sorted(codes))]) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
