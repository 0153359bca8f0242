#!/usr/bin/env bash
# A separate virtual environment for s3prl's SUPERB runner with armdistill installed into it.
#
# s3prl 0.4.18 calls torchaudio.set_audio_backend and torchaudio.sox_effects, which current
# torchaudio no longer has (s3prl issue 575): torch/torchaudio 2.6.0 still have both. Its runner
# imports huggingface_hub's HfFolder and Repository, which huggingface_hub 1.0 removed: the hub
# stays below 1.0, and so transformers stays on 4.57 (transformers 5 needs huggingface_hub>=1).
# See docs/s3prl-venv.md.
#
# Usage: scripts/s3prl_venv.sh S3PRL_SRC [VENV_DIR]   (default VENV_DIR: ~/.venvs/armdistill-s3prl)
#   S3PRL_SRC                an s3prl 0.4.18 source tree (the folder holding setup.py and s3prl/; how to
#                            get it: docs/s3prl-venv.md). It is installed editable: the runner's configs,
#                            preprocess scripts and the PR corpus reader are in it, not in the PyPI package.
# Environment:
#   PYTHON=python3.11        interpreter for the venv (torch 2.6.0 has wheels for 3.9-3.13)
#   TORCH_INDEX=URL          extra index for torch/torchaudio, e.g. PyTorch's CPU-only wheel index
#                            (PyPI's Linux wheels are the CUDA build, several GB with their libraries)
set -euo pipefail

S3PRL_VERSION=0.4.18
S3PRL_SRC=$(cd "${1:?usage: scripts/s3prl_venv.sh S3PRL_SRC [VENV_DIR]}" && pwd)
VENV=${2:-$HOME/.venvs/armdistill-s3prl}
PYTHON=${PYTHON:-python3}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

step() { printf '\n== %s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

found=$(cat "$S3PRL_SRC/s3prl/version.txt" 2>/dev/null || echo "no s3prl/version.txt")
if [[ "$found" != "$S3PRL_VERSION" ]]; then
    echo "$S3PRL_SRC: expected an s3prl $S3PRL_VERSION source tree, found $found" >&2
    exit 2
fi

step "create $VENV with $($PYTHON --version)"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip)
"${PIP[@]}" install --upgrade pip setuptools wheel

step "s3prl $S3PRL_VERSION: the source tree's code against the PyPI release"
# The tree adds configs, preprocess scripts and data readers; every file the release has must be the same.
SDIST=$(mktemp -d)
"${PIP[@]}" download --no-deps --no-binary :all: "s3prl==$S3PRL_VERSION" -d "$SDIST"
tar -xzf "$SDIST/s3prl-$S3PRL_VERSION.tar.gz" -C "$SDIST"
differences=$(diff -rq -x __pycache__ "$SDIST/s3prl-$S3PRL_VERSION/s3prl" "$S3PRL_SRC/s3prl" \
    | grep -v "^Only in $S3PRL_SRC/s3prl" || true)
if [[ -n "$differences" ]]; then
    printf '%s\n%s: not the s3prl %s release (above)\n' "$differences" "$S3PRL_SRC/s3prl" "$S3PRL_VERSION" >&2
    exit 2
fi
echo "every file of the PyPI release is the same in $S3PRL_SRC/s3prl"
rm -r "$SDIST"

# Pinned for every later install, so s3prl's or armdistill's requirements cannot move them.
CONSTRAINTS="$VENV/armdistill-constraints.txt"
cat > "$CONSTRAINTS" <<'PINS'
torch==2.6.0
torchaudio==2.6.0
transformers==4.57.6
huggingface_hub==0.36.2
PINS

step "torch, torchaudio: $(grep torch "$CONSTRAINTS" | tr '\n' ' ')"
"${PIP[@]}" install ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} -c "$CONSTRAINTS" torch torchaudio

step "s3prl $S3PRL_VERSION (editable) from $S3PRL_SRC"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$S3PRL_SRC"
# What the downstream runner and the ASR, PR and IC experts import (s3prl lists them only among
# its extras): tensorboardX (runner), pandas (ASR, IC data), joblib (ASR bucket-length script),
# librosa (s3prl.dataio, which the PR data script imports),
# editdistance (WER / PER), soundfile (torchaudio's audio backend here), the hub's HfFolder.
"${PIP[@]}" install -c "$CONSTRAINTS" tensorboardX huggingface_hub transformers pandas joblib librosa editdistance soundfile

step "armdistill (editable, with its tests' and the synthetic corpus's extras) from $REPO"
"${PIP[@]}" install -c "$CONSTRAINTS" -e "$REPO[dev,synth]"

step "check"
"$VENV/bin/python" - <<'PY'
import huggingface_hub, torch, torchaudio, transformers
import s3prl.hub  # fails here when torchaudio is too new for s3prl
import s3prl.downstream.runner  # fails here when huggingface_hub has no HfFolder / Repository
import s3prl.downstream.asr.expert, s3prl.downstream.ctc.corpus.libriphone, s3prl.downstream.fluent_commands.expert
from armdistill.eval.s3prl_upstream import load_s3prl_upstream

import armdistill

wavs = [torch.randn(16000), torch.randn(8000)]
for spec in ("tiny-arm", f"teacher:{armdistill.DEFAULT_TEACHER}"):
    out = load_s3prl_upstream(spec)(wavs)
    print(spec, "->", len(out["hidden_states"]), "hidden states of", tuple(out["hidden_states"][0].shape))
print("torch", torch.__version__, "torchaudio", torchaudio.__version__, "transformers", transformers.__version__,
      "huggingface_hub", huggingface_hub.__version__, "; s3prl's hub and runner import")
PY
step "done: $VENV/bin/armdistill superb --task asr --upstream STUDENT_DIR -- -m train -p EXPDIR; the runner check: $VENV/bin/python scripts/s3prl_check.py --s3prl-root $S3PRL_SRC/s3prl --corpus CORPUS --out WORKDIR"
