#!/usr/bin/env bash
# One prepared check for a CUDA machine, in at most 7.5 minutes (GPU time is scarce: it runs once).
#
#   scripts/gpu_check.sh OUTDIR
#
# Runs, each step under its own time limit and carrying on if one fails:
#   1. environment report (GPU, torch, which packages came from the wheel folder)
#   2. the test suite on the CUDA machine (CUDA-only tests included)
#   3. the training benchmark (images/s at 256², precision/memory-format/compile variants)
#   4. a short real training run on the sample shards (bf16-mixed, 256² crops)
#   5. export of that run, stylize of sample photos on CUDA, inference benchmark at 512²/720p/1080p
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
if [ "$DEV" = cuda ]; then ACCEL=gpu; SIZE=256; BATCH=16; else ACCEL=cpu; SIZE=64; BATCH=2; fi
if [ "$QUICK" = 1 ]; then STEPS=60; TESTS=tests/test_cuda.py; else STEPS=300; TESTS=tests; fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export FST_CACHE=${FST_CACHE:-$PWD/.gpu_cache} FST_OFFLINE=1 PYTHONUNBUFFERED=1
WHEELS=${FST_WHEELS:-.whl}
SUMMARY=$OUT/summary.md
echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$SUMMARY"

# The whole script stays within BUDGET seconds (default 450: 7.5 min, leaving room for the machine's
# start inside an 8-minute slot): a step's limit is cut to what is left, a step with < 10 s left is
# skipped. Steps run in order of how scarce their figure is.
BUDGET=${FST_CHECK_BUDGET:-450}

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

# 2. training benchmark (first: the figure GPU time is scarcest for)
if [ "$QUICK" = 1 ]; then VARIANTS=("fp32 eager" "bf16 + channels_last" "fp16 autocast + channels_last")
else VARIANTS=("fp32 eager" "bf16 autocast" "channels_last" "bf16 + channels_last" "fp16 autocast + channels_last"
               "bf16 + channels_last + compile"); fi
step bench_train 110 35 $PY scripts/bench_train.py --device "$DEV" --size $SIZE --batch $BATCH \
  --steps $([ "$QUICK" = 1 ] && echo 8 || echo 15) --warmup 3 --json "$OUT/bench_train.json" --only "${VARIANTS[@]}"
grep '^|' "$OUT/bench_train.log" >> "$SUMMARY" 2>/dev/null

# 3. tests (the VGG19 relu5_1 check needs the full VGG19, which is not carried to this box)
step tests 140 45 $PY -m pytest -q -p no:cacheprovider -x --durations=5 \
  --deselect "tests/test_vgg.py::test_trained_network_is_sparse_on_a_real_photo[vgg19-relu5_1]" $TESTS
tail -n 3 "$OUT/tests.log" | sed 's/^/    /' >> "$SUMMARY"


# 4. a short real training run on the sample shards
step fit 80 50 $PY -m fst.cli fit --config configs/quickstart.yaml --trainer.accelerator $ACCEL \
  --trainer.precision bf16-mixed --trainer.max_steps $STEPS --trainer.benchmark true \
  --data.crop_size $SIZE --data.val_size $SIZE --data.batch_size $BATCH --data.num_workers 6 \
  --model.style_size 512 --model.channels_last true --trainer.enable_progress_bar false \
  --trainer.default_root_dir "$OUT/run" --trainer.logger.init_args.save_dir "$OUT/run" \
  --checkpoint.dirpath "$OUT/run/checkpoints" --checkpoint.every_n_train_steps 50
grep -E "Trainer.fit|Error|error" "$OUT/fit.log" | tail -n 3 | sed 's/^/    /' >> "$SUMMARY"
[ -d "$OUT/run" ] && $PY - "$OUT/run" >> "$SUMMARY" 2>&1 <<'PYEOF'
import statistics, sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(str(next(Path(sys.argv[1]).rglob("events.out.tfevents.*")).parent)); acc.Reload()
ips = [e.value for e in acc.Scalars("perf/images_per_sec")][2:]
first, last = acc.Scalars("loss/total")[0], acc.Scalars("loss/total")[-1]
print(f"    fit: median {statistics.median(ips):.0f} images/s over {len(ips)} logged steps; "
      f"loss/total {first.value:.3f} (step {first.step}) -> {last.value:.3f} (step {last.step})")
PYEOF

# 5. export, stylize on CUDA, inference benchmark
step export 40 15 $PY -m fst.cli export "$OUT/run/checkpoints/last.ckpt" --out "$OUT/model.pt"
step stylize 40 15 $PY -m fst.cli stylize fst/assets/photos/alpaca.jpg fst/assets/photos/brandenburg_gate.jpg \
  --model "$OUT/model.pt" --out "$OUT/stylized" --device "$DEV"
if [ "$QUICK" != 1 ]; then
  step bench_infer 60 25 $PY scripts/bench_infer.py --device "$DEV" --quick --json "$OUT/bench_infer.json"
  grep '^|' "$OUT/bench_infer.log" >> "$SUMMARY" 2>/dev/null
fi
step bench_losses 40 20 $PY scripts/bench_losses.py --device "$DEV" --repeats 10 --size $SIZE
grep '^|' "$OUT/bench_losses.log" >> "$SUMMARY" 2>/dev/null
if [ "$QUICK" != 1 ]; then
  step bench_data 60 20 $PY scripts/bench_data.py --workers 0,4 --repeats 1 --batches 30 --decode-on-device "$DEV"
  grep '^|' "$OUT/bench_data.log" >> "$SUMMARY" 2>/dev/null
fi
echo "done in $SECONDS s" | tee -a "$SUMMARY"
