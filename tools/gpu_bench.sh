#!/usr/bin/env bash
# The whole GPU benchmark in one call on a lent H200 (BENCHMARKS.md, "GPU (H200)": the device `run`
# calls that carry DALI there first). From the repository root on the device machine:
#
#   . .dalipack/py/unpack.sh && bash tools/gpu_bench.sh
#
# Self-contained: draws ImageNet-like JPEGs (a pool of distinct photo-like images, bytes reused),
# converts them with `imagenet-pipe convert`, then runs every `imagenet-pipe bench` stage for
# train-224, eval-224 and eval-384 (read, decode-only ceiling, decode + crop/resize, DALI loader
# with pil_parity on and off, baseline loader at equal cores, ResNet-50 step fed by the loader),
# time to first batch for 1,024 shards (256 samples each) with and without .idx, and a narrowed
# auto-tune (DALI threads, prefetch, hardware-decoder share).
# Writes to $OUT (the device tool's folder; else bench-out/gpu): bench.json, bench.png,
# tuned-<preset>-gpu.yaml (x3), gpu_bench.log, machine.txt -- 7 files, under the 8 that come back.
#
# Sized for one 10-minute call: data about 1-2 min, the bench cut at BENCH_BUDGET_S (default 420 s;
# bench.json is written after each preset, so a cut run still returns its numbers).
# Dry run on a CPU machine (checks everything but the GPU; about 3 minutes on 2 cores):
#   DEVICE=cpu TRAIN=384 POOL=24 BATCH=32 BATCHES=3 REPEATS=2 TTFB_SHARDS=64 TTFB_PER_SHARD=4 MODEL=tiny \
#     OUT=/tmp/gpu-dry DATA=/tmp/gpu-dry-data bash tools/gpu_bench.sh
set -uo pipefail
T0=$(date +%s)
OUT=${OUT:-bench-out/gpu}
DATA=${DATA:-/root/bench-data}
DEVICE=${DEVICE:-gpu}
TRAIN=${TRAIN:-12800}           # samples in the split the bench reads (a pass must hold WARMUP + BATCHES)
POOL=${POOL:-1600}              # distinct photos drawn (about 50 ms each, spread over all cores)
BATCH=${BATCH:-}                # empty: each preset's own batch size (256, eval-384: 128)
BATCHES=${BATCHES:-30}          # timed batches per repeat
WARMUP=${WARMUP:-5}
REPEATS=${REPEATS:-5}
TTFB_SHARDS=${TTFB_SHARDS:-1024}
TTFB_PER_SHARD=${TTFB_PER_SHARD:-256}   # samples per first-batch shard (16x16 JPEGs; real shards hold ~1,250)
MODEL=${MODEL:-resnet50}        # torchvision is on the H200 image; `tiny` is built in
BENCH_BUDGET_S=${BENCH_BUDGET_S:-420}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_bench.log") 2>&1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PY:-$(command -v python3 || command -v python)}

{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(hostname)"; uname -a
  nvidia-smi || echo "nvidia-smi: not available"
  lscpu | grep -E 'Model name|^CPU\(s\)|Thread|Socket|NUMA node\(s\)' || true
  free -g | head -2; df -h "$(dirname "$DATA")" | tail -1
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"
  "$PY" -c "import nvidia.dali as d, webdataset; print('DALI', d.__version__)"
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
"$PY" -c "import nvidia.dali, webdataset" || { echo "DALI or webdataset missing: source .dalipack/py/unpack.sh first"; exit 2; }

echo "== data: $TRAIN ImageNet-like JPEGs ($POOL distinct) -> imagenet-pipe convert -> $DATA"
"$PY" -m imagenet_pipe.bench.data "$DATA" --train "$TRAIN" --val 64 --classes 128 --pool "$POOL" \
  --shard-size 256 --workers "$(nproc)" || exit 3
echo "data ready after $(( $(date +%s) - T0 )) s"

echo "== bench (cut at ${BENCH_BUDGET_S} s)"
args=(bench "$DATA" --preset train-224,eval-224,eval-384 --device "$DEVICE" --repeats "$REPEATS"
      --warmup "$WARMUP" --batches "$BATCHES" --model "$MODEL" --model-step auto --ttfb-shards "$TTFB_SHARDS"
      --ttfb-per-shard "$TTFB_PER_SHARD" --ttfb-tiny-images
      --tune --tune-repeats "${TUNE_REPEATS:-1}" --tune-threads "$(( $(nproc) / 2 )),$(nproc)" --tune-prefetch 2,3
      --tune-hw-loads 0.5,0.65,0.8,1.0
      --out "$OUT")
[ -n "$BATCH" ] && args+=(--batch-size "$BATCH")
args+=(--tune-batch-sizes "${TUNE_BATCHES:-}")   # empty: batch size not swept (saves a minute)
timeout -k 10 "$BENCH_BUDGET_S" "$PY" -m imagenet_pipe "${args[@]}"
rc=$?
[ $rc -eq 124 ] && echo "bench cut at ${BENCH_BUDGET_S} s: bench.json holds the presets finished before"
ls -la "$OUT"
echo "total $(( $(date +%s) - T0 )) s, bench rc $rc"
exit $rc
