#!/usr/bin/env bash
# CPU latency of one 10 s utterance through `armdistill bench`: HuBERT Base (random weights),
# armhubert and maskhubert in PyTorch eager (`paper` mode) and as ONNX Runtime fp32 and int8
# exports of the same weights (`armdistill export --format onnx --quantize int8`).
#
#   bash benchmarks/onnx_latency.sh THREADS [REPEATS]
#
# Writes benchmarks/results/bench_onnx_cpu_<threads>thread(s)/bench.json; the exports stay in
# runs/onnx-latency/ (ignored by git). The README table: python benchmarks/bench_table.py FILE.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
threads="${1:?threads}"
repeats="${2:-11}"
# the project's venv (make install) unless PYTHON names another interpreter
py="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}"
work=runs/onnx-latency
out="benchmarks/results/bench_onnx_cpu_${threads}thread$([ "$threads" = 1 ] || echo s)"
models=()
for preset in armhubert maskhubert; do
  # exported afresh every run, so the rows measure the current exporter's graphs
  rm -rf "$work/$preset" "$work/$preset-onnx"
  "$py" -c "import sys, torch; from armdistill import Student; torch.manual_seed(0); Student.from_preset(sys.argv[1]).save_pretrained(sys.argv[2])" \
    "$preset" "$work/$preset"
  "$py" -m armdistill.cli export "$work/$preset" "$work/$preset-onnx" --format onnx --quantize int8
  models+=("$preset" "$work/$preset-onnx/model.onnx" "$work/$preset-onnx/model.int8.onnx")
done
"$py" -m armdistill.cli bench hubert-base "${models[@]}" --reuse-modes paper --seconds 10 --batch 1 \
  --throughput-seconds 10 --threads "$threads" --repeats "$repeats" --out "$out"
