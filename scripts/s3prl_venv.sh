#!/usr/bin/env bash
# A separate virtual environment for s3prl's SUPERB runner with armdistill installed into it.
#
# s3prl 0.4.18 calls torchaudio.set_audio_backend and torchaudio.sox_effects, which current
# torchaudio no longer has (s3prl issue 575). torch/torchaudio 2.6.0 still have both, and
# transformers 5 (which armdistill's teachers load with) needs torch>=2.6. See docs/s3prl-venv.md.
#
# Usage: scripts/s3prl_venv.sh [VENV_DIR]   (default: ~/.venvs/armdistill-s3prl)
# Environment:
#   PYTHON=python3.11        interpreter for the venv (torch 2.6.0 has wheels for 3.9-3.13)
#   TORCH_INDEX=URL          extra index for torch/torchaudio, e.g. PyTorch's CPU-only wheel index
#                            (PyPI's Linux wheels are the CUDA build, several GB with their libraries)
#   S3PRL_SRC=DIR            an s3prl git checkout (tag v0.4.18) to install instead of the PyPI
#                            release; the checkout also holds the downstream configs the runner needs
set -euo pipefail

VENV=${1:-$HOME/.venvs/armdistill-s3prl}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=2.6.0
TORCHAUDIO_VERSION=2.6.0
S3PRL_VERSION=0.4.18
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

step() { printf '\n== %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

step "create $VENV with $($PYTHON --version)"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --upgrade pip setuptools wheel

# Pinned for every later install, so s3prl's or armdistill's requirements cannot move torch.
CONSTRAINTS="$VENV/armdistill-constraints.txt"
printf 'torch==%s\ntorchaudio==%s\n' "$TORCH_VERSION" "$TORCHAUDIO_VERSION" > "$CONSTRAINTS"

step "torch $TORCH_VERSION, torchaudio $TORCHAUDIO_VERSION"
"${PIP[@]}" install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -c "$CONSTRAINTS" \
    "torch==$TORCH_VERSION" "torchaudio==$TORCHAUDIO_VERSION"

step "s3prl"
if [[ -n "${S3PRL_SRC:-}" ]]; then
    "${PIP[@]}" install -c "$CONSTRAINTS" -e "$S3PRL_SRC"
else
    "${PIP[@]}" install -c "$CONSTRAINTS" "s3prl==$S3PRL_VERSION"
fi
# The downstream runner imports these at start-up; s3prl lists them only among its extras.
"${PIP[@]}" install -c "$CONSTRAINTS" tensorboardX huggingface_hub editdistance soundfile

step "armdistill (editable) from $REPO"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$REPO"

step "check"
"$VENV/bin/python" - <<'EOF'
import torch, torchaudio
import s3prl.hub  # fails here when torchaudio is too new for s3prl
from armdistill.eval.s3prl_upstream import load_s3prl_upstream

import armdistill

wavs = [torch.randn(16000), torch.randn(8000)]
for spec in ("tiny-arm", f"teacher:{armdistill.DEFAULT_TEACHER}"):
    out = load_s3prl_upstream(spec)(wavs)
    print(spec, "->", len(out["hidden_states"]), "hidden states of", tuple(out["hidden_states"][0].shape))
print("torch", torch.__version__, "torchaudio", torchaudio.__version__, "s3prl hub imports")
EOF
step "done: $VENV/bin/armdistill superb --task asr --upstream STUDENT_DIR --s3prl-root S3PRL_CHECKOUT/s3prl -- -m train -n NAME"
