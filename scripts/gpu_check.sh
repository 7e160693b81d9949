#!/usr/bin/env bash
# One prepared check for a CUDA machine, in at most ~8 minutes (GPU time is scarce: it runs once).
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
set -uo pipefail
OUT=${1:?usage: scripts/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export FST_CACHE=${FST_CACHE:-$PWD/.gpu_cache} FST_OFFLINE=1 PYTHONUNBUFFERED=1
WHEELS=${FST_WHEELS:-.whl}
SUMMARY=$OUT/summary.md
echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$SUMMARY"

step() {  # step NAME SECONDS CMD... : run with a limit, log to OUTDIR/NAME.log, record the outcome
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
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
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $PY -c "import sys, torch, torchvision, pytorch_lightning as pl, webdataset, jsonargparse; print('python', sys.version.split()[0], '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| lightning', pl.__version__, '| webdataset', webdataset.__version__, '| jsonargparse', jsonargparse.__version__, '| cuda', torch.cuda.is_available())"
  $PY -m fst.cli weights info
} >> "$OUT/env.log" 2>&1
sed 's/^/    /' "$OUT/env.log" >> "$SUMMARY"

# 2. tests (the VGG19 relu5_1 check needs the full VGG19, which is not carried to this box)
step tests 140 $PY -m pytest -q -p no:cacheprovider -x --durations=5 \
  --deselect "tests/test_vgg.py::test_trained_network_is_sparse_on_a_real_photo[vgg19-relu5_1]" tests
tail -n 3 "$OUT/tests.log" | sed 's/^/    /' >> "$SUMMARY"

# 3. training benchmark
step bench_train 110 $PY scripts/bench_train.py --device cuda --batch 16 --steps 15 --warmup 3 \
  --json "$OUT/bench_train.json" \
  --only "fp32 eager" "bf16 autocast" "channels_last" "bf16 + channels_last" "fp16 autocast + channels_last" \
         "bf16 + channels_last + compile"
grep '^|' "$OUT/bench_train.log" >> "$SUMMARY"

step bench_losses 40 $PY scripts/bench_losses.py --device cuda --repeats 10
grep '^|' "$OUT/bench_losses.log" >> "$SUMMARY"

# 4. a short real training run on the sample shards
step fit 80 $PY -m fst.cli fit --config configs/quickstart.yaml --trainer.accelerator gpu \
  --trainer.precision bf16-mixed --trainer.max_steps 300 --trainer.benchmark true \
  --data.crop_size 256 --data.val_size 256 --data.batch_size 16 --data.num_workers 6 \
  --model.style_size 512 --model.channels_last true --trainer.enable_progress_bar false \
  --trainer.default_root_dir "$OUT/run" --trainer.logger.init_args.save_dir "$OUT/run" \
  --checkpoint.dirpath "$OUT/run/checkpoints" --checkpoint.every_n_train_steps 100
grep -E "images_per_sec|Trainer.fit|Error|error" "$OUT/fit.log" | tail -n 3 | sed 's/^/    /' >> "$SUMMARY"

# 5. export, stylize on CUDA, inference benchmark
step export 40 $PY -m fst.cli export "$OUT/run/checkpoints/last.ckpt" --out "$OUT/model.pt"
step stylize 40 $PY -m fst.cli stylize fst/assets/photos/alpaca.jpg fst/assets/photos/brandenburg_gate.jpg \
  --model "$OUT/model.pt" --out "$OUT/stylized" --device cuda
step bench_infer 60 $PY scripts/bench_infer.py --device cuda --json "$OUT/bench_infer.json"
grep '^|' "$OUT/bench_infer.log" >> "$SUMMARY"
echo "done in $SECONDS s" | tee -a "$SUMMARY"
