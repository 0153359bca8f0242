#!/usr/bin/env bash
# Recreates the shipped demo teacher (src/armdistill/assets/teacher): the demo's synthetic corpus,
# HuBERT masked prediction on phone targets, then PR probes of the teacher and the MFCC baselines.
# Optionally (KMEANS=1) the same pretraining on MFCC k-means units, probed the same way.
# PROBE=0 skips the probes (e.g. train on a GPU machine, probe elsewhere).
#   scripts/train_default_teacher.sh OUT_DIR        (a GPU makes this a few minutes)
set -euo pipefail
OUT=${1:?usage: $0 OUT_DIR}
ARMDISTILL=${ARMDISTILL:-armdistill}
CORPUS=${CORPUS:-$OUT/corpus}
WORK=${WORK:-$OUT/work}
STEPS=${STEPS:-6000}
BATCH=${BATCH:-32}
MINUTES=${MINUTES:-30}
PROBE_SET=${PROBE_SET:-}
mkdir -p "$OUT" "$WORK"

$ARMDISTILL synth "$CORPUS" --minutes "$MINUTES" --seed 0 --workers "$(nproc)"
$ARMDISTILL pretrain-teacher --corpus "$CORPUS" --out "$OUT/teacher" --targets phones "steps=$STEPS" "batch_size=$BATCH"

if [ "${KMEANS:-0}" = 1 ]; then
  $ARMDISTILL pretrain-teacher --corpus "$CORPUS" --out "$OUT/teacher-kmeans" --targets kmeans "steps=$STEPS" "batch_size=$BATCH"
fi
[ "${PROBE:-1}" = 1 ] || exit 0

probe() {  # probe NAME UPSTREAM
  $ARMDISTILL probe --task pr --upstream "$2" --train "$CORPUS/train.tsv" --valid "$CORPUS/valid.tsv" \
    --test "$CORPUS/test.tsv" --out "$WORK/probe-$1" --cache-dir "$WORK/cache" --quiet $PROBE_SET
}
probe teacher "$OUT/teacher"
probe mfcc mfcc
probe mfcc-context mfcc-context
[ -d "$OUT/teacher-kmeans" ] && probe teacher-kmeans "$OUT/teacher-kmeans"
python3 - "$WORK" "$OUT/results.json" <<'PY'
import json, pathlib, sys
work, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
results = {}
for metrics in sorted(work.glob("probe-*/metrics.json")):
    m = json.loads(metrics.read_text())
    results[metrics.parent.name[len("probe-"):]] = {"per": m["test"], "valid_per": m["valid"], "layer_weights": m["layer_weights"]}
for name in ("teacher", "teacher-kmeans"):
    hist = out.parent / name / "pretrain_history.json"
    if hist.exists():
        results.setdefault(name, {})["pretrain"] = json.loads(hist.read_text())["stats"]
out.write_text(json.dumps(results, indent=2))
print(json.dumps({k: v.get("per") for k, v in results.items()}, indent=2))
PY
