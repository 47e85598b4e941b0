"""Write small ImageNet-format TFRecord shards whose labels are learnable.

Used by the tests and for the local stack's per-region sample data. Each class has
its own colour (drawn from ``--seed``, so every region's data differs) plus per-image
noise and a random bright square, so a small ResNet learns the labels in a few dozen
steps, and they survive the random crop and flip of the training pipeline.

Output (TF's ``build_imagenet_data.py`` layout)::

    OUTPUT_DIR/train/train-00000-of-00004 ...
    OUTPUT_DIR/validation/validation-00000-of-00002 ...

Run with the training venv's python (it needs TensorFlow to encode JPEGs)::

    PYTHONPATH=images/training python -m resnet_hvd.generate_data \\
        --output-dir /tmp/data --seed 1 --num-classes 4 --image-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def _bytes(value: bytes):
    import tensorflow as tf

    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_image(rng: np.random.Generator, colour: np.ndarray, size: int) -> np.ndarray:
    """An ``size``² uint8 RGB image: class colour + noise + a random bright square."""
    image = colour[None, None, :] + rng.normal(0.0, 20.0, (size, size, 3))
    side = max(size // 4, 2)
    y, x = rng.integers(0, size - side, 2)
    image[y : y + side, x : x + side] += 60.0
    return np.clip(image, 0, 255).astype(np.uint8)


def write_split(
    directory: str,
    split: str,
    records: int,
    shards: int,
    palette: np.ndarray,
    image_size: int,
    rng: np.random.Generator,
) -> list[str]:
    """Write ``records`` examples round-robin over ``shards`` files; return the paths."""
    import tensorflow as tf

    os.makedirs(os.path.join(directory, split), exist_ok=True)
    paths = [
        os.path.join(directory, split, f"{split}-{i:05d}-of-{shards:05d}") for i in range(shards)
    ]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    try:
        for i in range(records):
            label = int(rng.integers(0, len(palette)))
            image = make_image(rng, palette[label], image_size)
            encoded = tf.io.encode_jpeg(image, quality=95).numpy()
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "image/encoded": _bytes(encoded),
                        "image/format": _bytes(b"JPEG"),
                        "image/height": _int(image_size),
                        "image/width": _int(image_size),
                        "image/channels": _int(3),
                        # 1-based like ImageNet's (0 is the background class).
                        "image/class/label": _int(label + 1),
                        "image/class/synset": _bytes(f"n{label:08d}".encode()),
                        "image/filename": _bytes(f"{split}_{i:06d}.JPEG".encode()),
                    }
                )
            )
            writers[i % shards].write(example.SerializeToString())
    finally:
        for writer in writers:
            writer.close()
    return paths


def palette_for(seed: int, num_classes: int) -> np.ndarray:
    """Class colours, well apart: evenly spaced on a colour wheel, rotated by the seed."""
    rng = np.random.default_rng(seed)
    offset = rng.uniform(0, 2 * np.pi)
    angles = offset + 2 * np.pi * np.arange(num_classes) / num_classes
    # Three phase-shifted cosines: a hue wheel in RGB, kept inside 40..215.
    phases = np.array([0.0, 2 * np.pi / 3, 4 * np.pi / 3])
    return 127.5 + 87.5 * np.cos(angles[:, None] + phases[None, :])


def generate(
    output_dir: str,
    seed: int = 0,
    num_classes: int = 4,
    image_size: int = 32,
    train_records: int = 512,
    validation_records: int = 128,
    train_shards: int = 4,
    validation_shards: int = 2,
) -> dict:
    """Write both splits; return (and store as ``OUTPUT_DIR/dataset.json``) a summary."""
    if num_classes < 2:
        raise ValueError("need at least 2 classes")
    rng = np.random.default_rng(seed)
    palette = palette_for(seed, num_classes)
    summary = {
        "seed": seed,
        "num_classes": num_classes,
        "image_size": image_size,
        "label_offset": 1,
        "train_records": train_records,
        "validation_records": validation_records,
        "train_files": write_split(
            output_dir, "train", train_records, train_shards, palette, image_size, rng
        ),
        "validation_files": write_split(
            output_dir, "validation", validation_records, validation_shards, palette, image_size, rng
        )
        if validation_records
        else [],
    }
    with open(os.path.join(output_dir, "dataset.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output-dir", required=True, help="where train/ and validation/ go")
    parser.add_argument("--seed", type=int, default=0, help="colours and images (per region)")
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32, help="JPEG side in pixels")
    parser.add_argument("--train-records", type=int, default=512)
    parser.add_argument("--validation-records", type=int, default=128)
    parser.add_argument("--train-shards", type=int, default=4)
    parser.add_argument("--validation-shards", type=int, default=2)
    args = parser.parse_args(argv)
    summary = generate(
        args.output_dir,
        seed=args.seed,
        num_classes=args.num_classes,
        image_size=args.image_size,
        train_records=args.train_records,
        validation_records=args.validation_records,
        train_shards=args.train_shards,
        validation_shards=args.validation_shards,
    )
    print(
        f"wrote {summary['train_records']} train + {summary['validation_records']} validation "
        f"records ({args.num_classes} classes, {args.image_size}px) to {args.output_dir}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
