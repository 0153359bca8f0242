#!/usr/bin/env bash
# The GPU measurements of docs/throughput.md as one script, most important first: the
# distillation step (release-style vs ours), student vs teacher inference at batch 8 x 12 s,
# the WavLM teacher's SDPA path, then torch.compile parity. JSON lands in $OUT
# (default benchmarks/results), named after the GPU. Needs torch with CUDA, transformers, rich.
#
#   bash benchmarks/gpu_checks.sh            # about 6-8 minutes on an H100 / H200
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-benchmarks/results}"
mkdir -p "$OUT"
DEV=$(python -c "import re, torch; n = torch.cuda.get_device_name(0); m = re.search(r'[A-Z]+\d{2,4}', n.split('NVIDIA')[-1]); print((m.group(0) if m else n.split()[-1]).lower())")
echo "device: $DEV"
status=0
timeout 330 python benchmarks/distill_step.py --device cuda --out "$OUT/distill_step_$DEV.json" || status=1
timeout 90 python benchmarks/student_throughput.py --device cuda --batch 8 --seconds 12 --out "$OUT/student_throughput_${DEV}_8x12s.json" || status=1
timeout 60 python benchmarks/teacher_throughput.py --device cuda --out "$OUT/teacher_throughput_$DEV.json" || status=1
timeout 90 python benchmarks/compile_parity.py --device cuda > "$OUT/compile_parity_$DEV.json" || status=1
cat "$OUT/compile_parity_$DEV.json"
exit $status
