"""Benchmark: TFRecord input pipeline vs ``--synthetic`` on the same model.

Runs the training entry point (``images/training/train.py``) twice per repeat with the
same recipe, once reading generated ImageNet-format TFRecords and once on synthetic
in-memory batches, and compares their images/sec (the entry point's own
``throughput:`` figure, which excludes the warm-up steps). A ratio of at least 0.95
means the input pipeline is not the bottleneck for that model on that machine.

Stdlib only; it drives the training venv's python::

    python3 -m bench.training_input_pipeline --python "$MRT_TRAIN_PYTHON"

On a CPU-only machine the pipeline and the model share the same cores, so the ratio
also counts the cores the JPEG decoding takes away from the model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING_DIR = ROOT / "images" / "training"


def run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")


def throughput(python: str, args: argparse.Namespace, data: Path, synthetic: bool,
               work: Path, env: dict[str, str]) -> float:
    out = work / ("synthetic" if synthetic else "tfrecord")
    cmd = [
        python, str(TRAINING_DIR / "train.py"),
        "--model", args.model, "--num-classes", str(args.num_classes),
        "--image-size", str(args.image_size), "--batch-size", str(args.batch_size),
        "--max-steps", str(args.warmup_steps + args.steps),
        "--throughput-warmup-steps", str(args.warmup_steps),
        "--log-every", str(args.steps), "--steps-per-epoch", "1000000",
        "--mixed-precision", str(args.mixed_precision), "--xla", str(args.xla),
        "--checkpoint-dir", "", "--sm-model-dir", str(out / "model"),
        "--output-data-dir", str(out),
    ]
    cmd += ["--synthetic"] if synthetic else ["--train-dir", str(data / "train")]
    run(cmd, env)
    summary = json.loads((out / "training_summary.json").read_text())
    return float(summary["mean_images_per_sec"])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--python", default=os.environ.get("MRT_TRAIN_PYTHON"),
                        help="training venv's python ($MRT_TRAIN_PYTHON)")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--image-size", type=int, default=112, help="training crop side")
    parser.add_argument("--jpeg-size", type=int, default=128, help="stored JPEG side")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--records", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per mode (median)")
    parser.add_argument("--mixed-precision", default="false")
    parser.add_argument("--xla", default="false")
    parser.add_argument("--data-dir", default=None, help="reuse/write the TFRecords here")
    args = parser.parse_args()
    if not args.python:
        parser.error("--python or MRT_TRAIN_PYTHON is required")

    env = dict(os.environ, PYTHONPATH=str(TRAINING_DIR), TF_CPP_MIN_LOG_LEVEL="2")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        data = Path(args.data_dir) if args.data_dir else work / "data"
        if not (data / "train").is_dir():
            run([args.python, "-m", "resnet_hvd.generate_data", "--output-dir", str(data),
                 "--num-classes", str(args.num_classes), "--image-size", str(args.jpeg_size),
                 "--train-records", str(args.records), "--validation-records", "0",
                 "--train-shards", "8"], env)
        results: dict[str, list[float]] = {"synthetic": [], "tfrecord": []}
        for _ in range(args.repeats):  # alternate, so drift hits both modes alike
            results["synthetic"].append(throughput(args.python, args, data, True, work, env))
            results["tfrecord"].append(throughput(args.python, args, data, False, work, env))

    synthetic = statistics.median(results["synthetic"])
    tfrecord = statistics.median(results["tfrecord"])
    print(f"model={args.model} image_size={args.image_size} jpeg_size={args.jpeg_size} "
          f"batch={args.batch_size} steps={args.steps} cpus={os.cpu_count()}")
    for mode, values in results.items():
        print(f"{mode:>9}: median {statistics.median(values):8.1f} images/sec  "
              f"runs {', '.join(f'{v:.1f}' for v in values)}")
    print(f"ratio tfrecord/synthetic = {tfrecord / synthetic:.3f} "
          f"({'pipeline keeps up' if tfrecord / synthetic >= 0.95 else 'pipeline-bound'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
