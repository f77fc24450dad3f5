"""The layout's rules, checked by walking the imports of every module under src/warmstart (module-level and
function-level alike): no import cycle of any length, apps (cli, serve, export, report, demo, push) imported by no
core module, ``warmstart --help`` answered without importing torch, and every script in benchmarks/ importing
against the package as it is."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "src" / "warmstart"
APPS = {
    f"warmstart.{m}"
    for m in (
        "cli",
        "cli_args",
        "cli_common",
        "cli_train",
        "cli_ship",
        "serve",
        "export",
        "export_transformers",
        "report",
        "demo",
        "push",
        "predict",
    )
}


def import_graph() -> dict[str, set[str]]:
    """Module -> the warmstart modules it imports (``from .data import Dataset`` counts as the package
    ``warmstart.data``; ``from . import data`` as the module)."""
    mods: dict[str, Path] = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        mods[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = f
    graph: dict[str, set[str]] = {}
    for name, f in mods.items():
        base = name if f.name == "__init__.py" else name.rsplit(".", 1)[0]
        out: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                out |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = base.split(".")
                    target = ".".join(
                        parts[: len(parts) - node.level + 1] + ([node.module] if node.module else [])
                    )
                else:
                    target = node.module or ""
                children = {f"{target}.{a.name}" for a in node.names} & set(mods)
                out |= children or ({target} & set(mods))
        graph[name] = out - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_imports_and_cycles():
    """The checks below are only as good as the walk: it must find known edges and a planted cycle."""
    graph = import_graph()
    assert "warmstart.data.inputs" in graph["warmstart.techniques.base"]
    assert "warmstart.report" in graph["warmstart.cli_train"]  # a function-level import counts
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # any length
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_apps_sit_above_the_core():
    upward = {m: sorted(deps & APPS) for m, deps in import_graph().items() if m not in APPS and deps & APPS}
    assert upward == {}


def torch_imported_by(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter imports torch."""
    probe = code + "\nimport sys\nprint('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    return out.stdout.strip().splitlines()[-1] == "True"


def test_help_does_not_import_torch():
    assert not torch_imported_by(
        "import sys, runpy\nsys.argv = ['warmstart', '--help']\ntry:\n    runpy.run_module('warmstart.cli', "
        "run_name='__main__')\nexcept SystemExit:\n    pass"
    )


def test_modules_that_run_without_torch_do_not_import_it():
    """scripts/setup.sh checks the assets before every `make demo` and `make test`; cross-validation workers
    start with the lexical features only. Importing torch would cost them seconds each."""
    assert not torch_imported_by("import warmstart.assets, warmstart.lexical, warmstart.parallel")


BENCHMARKS = ROOT.parents[1] / "benchmarks"
IMPORT_ALL = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
failed, skipped = {}, {}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:  # a peer library installed for one benchmark only
        if (e.name or "").split(".")[0] in ("warmstart", *sys.argv[2:]):
            failed[name] = repr(e)
        else:
            skipped[name] = e.name
    except Exception as e:
        failed[name] = repr(e)
print(json.dumps({"failed": failed, "skipped": skipped}))
"""


def test_every_benchmark_imports_against_the_current_package():
    # a benchmark that imports a renamed or moved warmstart name fails here, not on the day someone runs it
    import json

    names = sorted(p.stem for p in BENCHMARKS.glob("*.py"))
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, str(BENCHMARKS), *names],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["failed"] == {}
    assert len(result["skipped"]) <= 3  # peer libraries are optional, warmstart's names are not
