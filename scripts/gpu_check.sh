#!/usr/bin/env bash
# One prepared check for a CUDA machine, in at most 8.3 minutes (GPU time is scarce: it runs once).
#
#   scripts/gpu_check.sh OUTDIR
#
# Runs, each step under its own time limit and carrying on if one fails, scarcest figure first:
#   1. environment report (GPU, torch, which packages came from the wheel folder)
#   2. the training benchmark (images/s at 256²): the classic step, then fst's variants; then a
#      clip stylized end to end (1920×1080: decode, network, encode, frames/s)
#   3. a real training run on the sample shards (bf16-mixed, 256², batch 32: images/s end to end),
#      then 20 steps of it under Lightning's PyTorchProfiler (where the time goes)
#   4. that run exported as an AOTInductor package (fp16, channels-last), stylize through it, and
#      inference timings at 512²/720p/1080p, batch 1 and 8 (eager, TorchScript, CUDA graph, package)
#   5. the CUDA-only tests and the AOTI tests
# and writes every figure and log into OUTDIR (summary.md first).
#
# Such machines may have an older torch and no package index: missing pure-Python packages are
# installed from a wheel folder beside the checkout ($FST_WHEELS, default .whl; `make gpu-wheels`
# fills it), and the VGG weights come from $FST_CACHE (default .gpu_cache; see docs/gpu.md).
#
# FST_CHECK_QUICK=1 shrinks every step (about 3 minutes); FST_CHECK_BUDGET=S caps the total at S seconds;
# FST_CHECK_DEVICE=cpu dry-runs the script
# on a machine without a GPU (tiny sizes), to catch mistakes before spending GPU time.
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
QUICK=${FST_CHECK_QUICK:-0}
DEV=${FST_CHECK_DEVICE:-cuda}
if [ "$DEV" = cuda ]; then ACCEL=gpu; SIZE=256; BATCH=16; FIT_BATCH=32; WORKERS=12; INFER_DTYPE=fp16
else ACCEL=cpu; SIZE=64; BATCH=2; FIT_BATCH=2; WORKERS=1; INFER_DTYPE=fp32; fi
if [ "$QUICK" = 1 ]; then STEPS=60; LOG_EVERY=10; else STEPS=400; LOG_EVERY=50; fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export FST_CACHE=${FST_CACHE:-$PWD/.gpu_cache} FST_OFFLINE=1 PYTHONUNBUFFERED=1
WHEELS=${FST_WHEELS:-.whl}
SUMMARY=$OUT/summary.md
echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$SUMMARY"

# The whole script stays within BUDGET seconds (default 500: 8.3 min, under the device's 10-minute
# limit per command): a step's limit is cut to what is left, a step with < 10 s left is
# skipped. Steps run in order of how scarce their figure is.
BUDGET=${FST_CHECK_BUDGET:-500}

step() {  # step NAME SECONDS QUICK_SECONDS CMD... : run with a limit, log to OUTDIR/NAME.log, record it
  local name=$1 limit=$2; shift 2
  if [ "$QUICK" = 1 ]; then limit=$1; fi; shift
  local left=$((BUDGET - SECONDS - 5))
  if [ "$left" -lt 10 ]; then
    echo "- $name: skipped, ${left} s of the ${BUDGET} s budget left" | tee -a "$SUMMARY"
    return 124
  fi
  if [ "$limit" -gt "$left" ]; then limit=$left; fi
  local t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "- $name: rc=$rc, $((SECONDS - t0)) s (limit $limit s)" | tee -a "$SUMMARY"
  return $rc
}

# 1. packages: use what is installed, take the rest from the wheel folder
missing=$($PY - <<'PYEOF'
import importlib.util
mods = {"webdataset": "webdataset", "braceexpand": "braceexpand", "jsonargparse": "jsonargparse",
        "docstring_parser": "docstring_parser", "typeshed_client": "typeshed_client"}
print(" ".join(m for m in mods if importlib.util.find_spec(m) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "- installing from $WHEELS: $missing" | tee -a "$SUMMARY"
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/fst-site "$WHEELS"/*.whl >> "$OUT/env.log" 2>&1
  export PYTHONPATH=/tmp/fst-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  $PY -c "import sys, torch, torchvision, pytorch_lightning as pl, webdataset, jsonargparse; print('python', sys.version.split()[0], '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| lightning', pl.__version__, '| webdataset', webdataset.__version__, '| jsonargparse', jsonargparse.__version__, '| cuda', torch.cuda.is_available())"
  $PY -m fst.cli weights info
} >> "$OUT/env.log" 2>&1
sed 's/^/    /' "$OUT/env.log" >> "$SUMMARY"

# 2. training benchmark: the classic step (Johnson's recipe, fp32 eager) first, every variant as a ratio of it
CLASSIC="classic step (fp32 eager)"
if [ "$QUICK" = 1 ]; then VARIANTS=("$CLASSIC" "fp32 eager" "bf16 + channels_last")
else VARIANTS=("$CLASSIC" "fp32 eager" "bf16 autocast" "bf16 + channels_last" "fp16 autocast + channels_last"
               "bf16 + channels_last + compile"); fi
step bench_train 110 35 $PY scripts/bench_train.py --device "$DEV" --size $SIZE --batch $BATCH \
  --steps $([ "$QUICK" = 1 ] && echo 8 || echo 15) --warmup 3 --json "$OUT/bench_train.json" --only "${VARIANTS[@]}"
grep '^|' "$OUT/bench_train.log" >> "$SUMMARY" 2>/dev/null
if [ "$DEV" = cuda ]; then VIDEO=(--size 1920x1080 --frames 120); else VIDEO=(--size 128x72 --frames 8); fi
if $PY -c "import av" 2> /dev/null; then  # PyAV's wheel (~35 MB) is not in .whl: the machine's own, if any
  step bench_video 60 40 $PY scripts/bench_video.py --device "$DEV" --dtype $INFER_DTYPE "${VIDEO[@]}"
  sed 's/^/    /' "$OUT/bench_video.log" | tail -n 2 >> "$SUMMARY" 2>/dev/null
else echo "- bench_video: skipped, PyAV is not installed (pip install av)" | tee -a "$SUMMARY"; fi

# 3. a real training run on the sample shards, end to end (loader, logging, checkpoints, previews):
#    the images/s figure of the issue; then the same run for a few steps under Lightning's profiler
FIT=($PY -m fst.cli fit --config configs/quickstart.yaml --trainer.accelerator $ACCEL
  --trainer.precision bf16-mixed --trainer.benchmark true --data.crop_size $SIZE --data.val_size $SIZE
  --data.num_workers $WORKERS --model.style_size 512 --model.channels_last true --trainer.enable_progress_bar false
  --trainer.log_every_n_steps $LOG_EVERY --trainer.val_check_interval 100 --checkpoint.every_n_train_steps 100)
step fit 100 50 "${FIT[@]}" --trainer.max_steps $STEPS --data.batch_size $FIT_BATCH \
  --trainer.default_root_dir "$OUT/run" --trainer.logger.init_args.save_dir "$OUT/run" --checkpoint.dirpath "$OUT/run/checkpoints"
grep -E "Trainer.fit|Error|error" "$OUT/fit.log" | tail -n 3 | sed 's/^/    /' >> "$SUMMARY"
[ -d "$OUT/run" ] && $PY - "$OUT/run" $FIT_BATCH >> "$SUMMARY" 2>&1 <<'PYEOF'
import statistics, sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(str(next(Path(sys.argv[1]).rglob("events.out.tfevents.*")).parent)); acc.Reload()
ips = [e.value for e in acc.Scalars("perf/images_per_sec")]
ips = ips[2:] if len(ips) > 4 else ips[1:] or ips  # the first logged steps include start-up
first, last = acc.Scalars("loss/total")[0], acc.Scalars("loss/total")[-1]
print(f"    fit (batch {sys.argv[2]}): median {statistics.median(ips):.0f} images/s over {len(ips)} logged steps; "
      f"loss/total {first.value:.3f} (step {first.step}) -> {last.value:.3f} (step {last.step})")
PYEOF
SORT=$([ "$DEV" = cuda ] && echo cuda_time_total || echo cpu_time_total)
step profile 60 40 "${FIT[@]}" --trainer.max_steps 20 --data.batch_size $FIT_BATCH \
  --trainer.profiler pytorch_lightning.profilers.PyTorchProfiler --trainer.profiler.sort_by_key $SORT \
  --trainer.profiler.row_limit 25 --trainer.default_root_dir "$OUT/prof" --trainer.logger.init_args.save_dir "$OUT/prof" \
  --checkpoint.dirpath "$OUT/prof/checkpoints"

# 4. the AOTInductor package of that run (one compile), stylize through it, then inference timings:
#    eager, TorchScript, CUDA graph and the package, at batch 1 and 8
step export_aoti 150 120 $PY -m fst.cli export "$OUT/run/checkpoints/last.ckpt" --out "$OUT/model.pt2" --format aoti \
  --device "$DEV" --dtype $INFER_DTYPE --channels-last
step stylize_aoti 40 15 $PY -m fst.cli stylize fst/assets/photos/alpaca.jpg fst/assets/photos/brandenburg_gate.jpg \
  --model "$OUT/model.pt2" --trust-compiled --out "$OUT/stylized" --device "$DEV"
if [ "$DEV" = cuda ]; then INFER=("eager fp16" "TorchScript fp16" "fp16 channels-last + CUDA graph")
else INFER=("eager fp32" "TorchScript fp32"); fi
step bench_infer 120 60 $PY scripts/bench_infer.py --device "$DEV" --quick --batch 1,8 --package "$OUT/model.pt2" \
  --only "${INFER[@]}" --json "$OUT/bench_infer.json"
grep -E '^\||^\*\*' "$OUT/bench_infer.log" >> "$SUMMARY" 2>/dev/null

# 5. the test suite's CUDA-only tests (the rest ran on CPU in CI)
step tests 120 100 $PY -m pytest -q -p no:cacheprovider -x --durations=5 tests/test_cuda.py tests/artefacts/test_compiled.py
tail -n 3 "$OUT/tests.log" | sed 's/^/    /' >> "$SUMMARY"
echo "done in $SECONDS s" | tee -a "$SUMMARY"
