#!/usr/bin/env bash
# GPU benchmark: ResNet-50 images/sec on one GPU, batch 256, mixed precision + XLA,
# synthetic data and TFRecords (generated here), via the training entry point.
#
# Needs a python with GPU TensorFlow 2.15.1 + Horovod (the training image has one):
#   docker run --gpus all --rm -v "$PWD:/src" -w /src multi-region-training/training:dev \
#       bash bench/gpu_resnet50.sh
#   MRT_TRAIN_PYTHON=/path/to/python bash bench/gpu_resnet50.sh
#
# About 3-5 minutes on one H100 (two runs of ~60 s XLA compile + 300 timed steps;
# data generation ~30 s); nothing is downloaded. Anchors (NVIDIA's TF ResNet-50 v1.5,
# AMP + XLA, batch 256): 1,270 images/sec on V100, 2,375 on A100.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${MRT_TRAIN_PYTHON:-$(command -v python3)}"
steps="${BENCH_STEPS:-300}"
warmup="${BENCH_WARMUP_STEPS:-100}"
batch="${BENCH_BATCH:-256}"
work="$(mktemp -d "${TMPDIR:-/tmp}/gpu-resnet50.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
export PYTHONPATH="${repo_root}/images/training" TF_CPP_MIN_LOG_LEVEL=2

"${python}" -c 'import tensorflow as tf, horovod.tensorflow as hvd
gpus = tf.config.list_physical_devices("GPU")
assert gpus, "no GPU visible to TensorFlow"
print("tensorflow", tf.__version__, "gpus", len(gpus), "nccl", hvd.nccl_built())'

# ImageNet-like JPEGs (256 px, cropped to 224) so decoding costs what it would.
"${python}" -m resnet_hvd.generate_data --output-dir "${work}/data" --seed 1 \
    --num-classes 1000 --image-size 256 --train-records 4096 --validation-records 0 \
    --train-shards 16 >&2

run() {
    local mode="$1"
    shift
    "${python}" "${repo_root}/images/training/train.py" \
        --model resnet50 --num-classes 1000 --image-size 224 --batch-size "${batch}" \
        --mixed-precision true --xla true \
        --max-steps "$((warmup + steps))" --throughput-warmup-steps "${warmup}" \
        --steps-per-epoch 5000 --log-every 100 --checkpoint-dir '' \
        --sm-model-dir "${work}/model-${mode}" --output-data-dir "${work}/out-${mode}" "$@" \
        | grep -E '^\[metrics\]|throughput:' >&2
    "${python}" -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["mean_images_per_sec"], 1))' \
        "${work}/out-${mode}/training_summary.json"
}

synthetic="$(run synthetic --synthetic)"
tfrecord="$(run tfrecord --train-dir "${work}/data/train")"
printf 'resnet50 batch=%s amp+xla: synthetic %s images/sec, tfrecord %s images/sec\n' \
    "${batch}" "${synthetic}" "${tfrecord}"
