#!/usr/bin/env bash
# Everything this repo measures on a CUDA machine, in one go (a lent GPU comes with minutes, not hours):
# the tests marked cuda and the GPU rows of the benchmark (encoder images/s at batch 1 and 8, ours against the
# official SAM and, where it is importable, segment-anything-fast); SCALING_S=450 adds the tiny model's
# scaling experiment.
# GPU_ARGS passes more options to the benchmark (see its --help). Results go to $OUT (default outputs/gpu).
# Each part has a time cap, so one slow part cannot eat the rest.
set -u
OUT=${OUT:-outputs/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
start=$SECONDS
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee "$OUT/gpu.txt"
echo "== tests marked cuda"
timeout "${TESTS_S:-90}" "$PY" -m pytest -q -m cuda -p no:cacheprovider \
    tests/fast/test_fast_paths.py tests/predictor/test_predictor.py tests/training/test_training.py 2>&1 | tee "$OUT/cuda_tests.log" | tail -n 15
if (( ${SCALING_S:-0} > 0 )); then
echo "== tiny model: more compute ($((SECONDS - start)) s)"
# 4,000 steps of 64 scenes (0.74x the shipped steps, 3x its scenes), prompts drawn on the GPU: see
# sam_from_scratch/data/tiny/EXPERIMENTS.md for why steps, not scenes, are the question.
timeout "${SCALING_S:-450}" "$PY" benchmarks/tiny_scaling.py --variants "${VARIANTS:-x8:360}" \
    --prompts-on-device --threads 2 --loaders 14 \
    --output "$OUT/scaling.json" 2>&1 | tee "$OUT/scaling.log" | grep -v " step "
fi
left=$(( ${TOTAL_S:-570} - (SECONDS - start) ))
echo "== benchmark, gpu section ($((SECONDS - start)) s; $left s left)"
if (( left > 30 )); then
    timeout "$left" "$PY" benchmarks/benchmark.py --sections gpu --gpu-variants "${GPU_VARIANTS:-vit_b,vit_h}" \
        --repeats "${GPU_REPEATS:-3}" ${GPU_ARGS:-} --output "$OUT/benchmark_gpu.md" 2>&1 | tee "$OUT/benchmark_gpu.log" | tail -n 40
fi
# segment-anything-fast keeps the kernel settings it tuned on a GPU other than an A100 here; keep them too
[ -f flash_4_configs.p ] && cp flash_4_configs.p "$OUT/"
echo "== done in $((SECONDS - start)) s"
