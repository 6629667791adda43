#!/usr/bin/env bash
# The whole GPU benchmark in one call, on any CUDA machine, from the repository root:
#
#   bash tools/gpu_bench.sh                       # writes bench-out/gpu/
#
# Run tools/gpu_smoke.py first (BENCHMARKS.md, "GPU"). Self-contained: draws ImageNet-like JPEGs (a
# pool of distinct photo-like images, bytes reused), converts them with `imagenet-pipe convert`, then
# runs every `imagenet-pipe bench` stage for train-224, eval-224 and eval-384: which JPEG decoder
# backends ran (hardware engine / CUDA / CPU, fallbacks flagged), raw read, decode-only ceiling,
# decode + crop/resize, DALI loader with pil_parity on and off, the baseline loader at equal cores,
# the memory one DALI loader holds (GPU, pinned host, RSS), a model step fed by the loader against
# the model alone (ResNet-50 when torchvision is installed), time to first batch for 1,024 shards
# (256 samples each) with and without .idx, and a narrowed auto-tune (threads, prefetch, hardware
# decoder share).
#
# Sized for one H200 with 16 cores: data 1-2 min (reused by later runs), the bench cut at
# BENCH_BUDGET_S (default 390 s), under 8 minutes in all. bench.json is rewritten after every stage,
# so a cut run keeps what it measured; a stage that fails is recorded in it and the run goes on.
# Outputs in $OUT: bench.json, bench.png (with matplotlib), tuned-<preset>-gpu.yaml, gpu_bench.log,
# machine.txt.
#
# The split must hold a steady timed window for the baseline, whose DataLoader holds 2 batches per
# worker ready: (4 + 1) x 2 x CORES + 1 batches per pass, so TRAIN follows CORES (16: 41,472 images,
# about 4 GB of shards). CORES pins both loaders to that many CPUs (default: all, at most 16).
# Dry run without a GPU (checks everything but the GPU; a few minutes on 2 cores):
#   DEVICE=cpu CORES=2 POOL=24 BATCH=16 BATCHES=3 REPEATS=2 TTFB_SHARDS=64 TTFB_PER_SHARD=4 MODEL=small \
#     OUT=/tmp/gpu-dry DATA=/tmp/gpu-dry-data bash tools/gpu_bench.sh
set -uo pipefail
T0=$(date +%s)
OUT=${OUT:-bench-out/gpu}
DATA=${DATA:-${TMPDIR:-/tmp}/imagenet-pipe-gpu-bench-data}
DEVICE=${DEVICE:-gpu}
CORES=${CORES:-$(( $(nproc) < 16 ? $(nproc) : 16 ))}
BATCH=${BATCH:-}                # empty: each preset's own batch size (256; eval-384: 128)
# samples in the split the bench reads: a whole number per class (128 classes)
TRAIN=${TRAIN:-$(( ((10 * CORES + 2) * ${BATCH:-256} + 127) / 128 * 128 ))}
POOL=${POOL:-1600}              # distinct photos drawn (about 50 ms each, spread over all cores)
BATCHES=${BATCHES:-30}          # timed batches per repeat (raised by the bench to 4 prefetch queues)
WARMUP=${WARMUP:-5}
REPEATS=${REPEATS:-3}
TTFB_SHARDS=${TTFB_SHARDS:-1024}
TTFB_PER_SHARD=${TTFB_PER_SHARD:-256}   # samples per first-batch shard (16x16 JPEGs; real shards hold ~1,250)
BENCH_BUDGET_S=${BENCH_BUDGET_S:-390}
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3 || command -v python); fi
fi
MODEL=${MODEL:-$("$PY" -c "import torchvision" 2>/dev/null && echo tv:resnet50 || echo small)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_bench.log") 2>&1
export PYTHONUNBUFFERED=1

{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; uname -a
  nvidia-smi || echo "nvidia-smi: not available"
  lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Socket|NUMA node\(s\)' || true
  free -g | head -2; df -h "$(dirname "$DATA")" | tail -1
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  "$PY" -c "import nvidia.dali as d; print('DALI', d.__version__)"
  echo "bench: cores $CORES, split $TRAIN images, model $MODEL, repeats $REPEATS"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
"$PY" -c "import nvidia.dali, webdataset, imagenet_pipe" || { echo "install first: make setup (README, Install)"; exit 2; }
if [ "$DEVICE" = gpu ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || { echo "torch sees no CUDA device (a CPU build of torch? see DEVELOPERS.md, Set-up)"; exit 2; }
fi

echo "== data: $TRAIN ImageNet-like JPEGs ($POOL distinct) -> imagenet-pipe convert -> $DATA"
"$PY" -m imagenet_pipe.bench.data "$DATA" --train "$TRAIN" --val 64 --classes 128 --pool "$POOL" \
  --shard-size 256 --workers "$(nproc)" || exit 3
echo "data ready after $(( $(date +%s) - T0 )) s"

echo "== bench (cut at ${BENCH_BUDGET_S} s)"
args=(bench "$DATA" --preset train-224,eval-224,eval-384 --device "$DEVICE" --cores "$CORES" --repeats "$REPEATS"
      --warmup "$WARMUP" --batches "$BATCHES" --model "$MODEL" --model-step auto --ttfb-shards "$TTFB_SHARDS"
      --ttfb-per-shard "$TTFB_PER_SHARD" --ttfb-tiny-images
      --tune --tune-repeats "${TUNE_REPEATS:-1}" --tune-threads "$(( CORES / 2 )),$CORES" --tune-prefetch 2,3
      --out "$OUT")
[ "$DEVICE" = gpu ] && args+=(--tune-hw-loads "${TUNE_HW_LOADS:-0.5,0.8,1.0}")
[ -n "$BATCH" ] && args+=(--batch-size "$BATCH")
args+=(--tune-batch-sizes "${TUNE_BATCHES:-}")   # empty: batch size not swept (saves a minute)
timeout -k 10 "$BENCH_BUDGET_S" "$PY" -m imagenet_pipe "${args[@]}"
rc=$?
[ $rc -eq 124 ] && echo "bench cut at ${BENCH_BUDGET_S} s: bench.json holds every stage finished before"
[ $rc -eq 1 ] && echo "some stages failed: they are listed at the end of the table and in bench.json (errors)"
ls -la "$OUT"
echo "total $(( $(date +%s) - T0 )) s, bench rc $rc"
exit $rc
