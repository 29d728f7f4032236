#!/usr/bin/env bash
# The complete AdvCAM throughput measurement (issue 13) in one table:
# ResNet-50 (random init), a VOC-like workload (mostly 375×500 / 500×375, 1-3 classes per image,
# 1.5 on average), T = 27, scales 1.0 0.5 1.5 2.0; the official-structure reference loop (strict
# fp32) beside the fast climb image by image and batched over images, in fp32, TF32 and bf16.
# Every variant stops starting new batches after 30 s, so the whole run fits in 8 minutes on an
# H100/H200-class GPU (the reference runs 3 images; the speed-up is measured in the same run).
#
#   benchmarks/gpu_check.sh                 # on a machine with a CUDA GPU
#   benchmarks/gpu_check.sh --cpu           # the same table at small sizes on the CPU (minutes)
#   benchmarks/gpu_check.sh --peak-tflops fp32=66.9 tf32=494.7 bf16=989.4   # extra flags go through
#
# Python: $PYTHON, else .venv/bin/python, else python; the repository's src/ is put on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python)}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if [[ "${1:-}" == "--cpu" ]]; then
    shift
    # VOC-like sizes ×0.25 (≈ 94×125), T = 3, two scales, 6 images (reference: 3); TF32 does not
    # exist on the CPU, so the table has fp32 and bf16 rows.
    exec "$PYTHON" benchmarks/advcam_speed.py --device cpu --workload voc --size-scale 0.25 --steps 3 \
        --scales 1.0 0.5 --num-images 6 --reference-images 3 --batch-size 4 --precisions fp32 bf16 \
        --modes single batched --threads 1 "$@"
fi

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device visible to $PYTHON; run 'benchmarks/gpu_check.sh --cpu' for the CPU table" >&2
    exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 480 "$PYTHON" benchmarks/advcam_speed.py --device cuda --workload voc --steps 27 \
    --scales 1.0 0.5 1.5 2.0 --num-images 32 --reference-images 3 --batch-size 8 \
    --precisions fp32 tf32 bf16 --modes single batched --variant-seconds 30 "$@"
