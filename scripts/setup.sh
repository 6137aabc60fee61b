#!/usr/bin/env bash
# Create .venv and install lingcollapse with its test tools.
#
# torch is installed first and on purpose: a bare `torch` requirement makes pip
# take the multi-GB CUDA build. Without an NVIDIA GPU we take the CPU build
# (from a local wheel cache when pip has one, else PyTorch's CPU index); with a
# GPU, PyPI's default (CUDA) build. Override with TORCH_VARIANT=cpu|cuda.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.13.0
VENV=.venv
STAMP=$VENV/.installed

if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$STAMP" -nt scripts/setup.sh ]; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip="$VENV/bin/python -m pip --quiet"

variant=${TORCH_VARIANT:-}
if [ -z "$variant" ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        variant=cuda
    else
        variant=cpu
    fi
fi

if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    echo "setup: installing torch $TORCH_VERSION ($variant build)" >&2
    if [ "$variant" = cpu ]; then
        $pip install "torch==$TORCH_VERSION+cpu" 2>/dev/null \
            || $pip install "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
    else
        $pip install "torch==$TORCH_VERSION"
    fi
fi

echo "setup: installing lingcollapse and its test tools" >&2
$pip install -e ".[dev]"
touch "$STAMP"
