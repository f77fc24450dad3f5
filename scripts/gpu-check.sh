#!/usr/bin/env bash
# On a machine with a CUDA GPU: the `gpu` tests, then a short GPU benchmark, in under 6 minutes, printing what is
# needed to judge them. Runs warmstart from src/ with the machine's own python3 (which must already hold torch with
# CUDA, transformers, peft, scikit-learn, pandas and pytest; sentence-transformers for the benchmark's peer):
# no virtual environment, nothing installed, no packaged weights needed.
#
#   bash scripts/gpu-check.sh            # PYTHON=/path/to/python3 to choose the interpreter
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WARMSTART_HOME=$(mktemp -d)
export WARMSTART_HOME
trap 'rm -rf "$WARMSTART_HOME"' EXIT
start=$(date +%s)

echo "== machine ($(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "nvidia-smi: not available"
"$PY" - <<'PY'
import importlib
import torch
print(f"python torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.device_count()} GPU(s)"
      + (f": {torch.cuda.get_device_name(0)}, bf16 {torch.cuda.is_bf16_supported()}" if torch.cuda.is_available() else ""))
for name in ("transformers", "peft", "sklearn", "pandas", "sentence_transformers", "onnxruntime", "fastapi"):
    try:
        print(f"  {name} {importlib.import_module(name).__version__}")
    except Exception as e:
        print(f"  {name}: missing ({type(e).__name__})")
import warmstart.runtime as rt
r = rt.resolve("auto", "auto")
print(f"warmstart resolves device=auto precision=auto to {r.describe()}")
PY

echo
echo "== gpu tests (tests/test_gpu.py, marker gpu)"
timeout 240 "$PY" -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider -rs
tests_rc=$?

echo
echo "== benchmark (benchmarks/gpu.py --quick)"
timeout 180 "$PY" benchmarks/gpu.py --quick 2>&1 | grep -v -e "Loading weights" -e "Writing model" -e "LOAD REPORT" -e "^Key " -e "^---" -e "pooler\." -e "^Notes:" -e "MISSING:" -e "^$"
bench_rc=${PIPESTATUS[0]}

echo
echo "== summary: gpu tests rc=$tests_rc, benchmark rc=$bench_rc, $(( $(date +%s) - start )) s in all"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ]
