"""Input pipelines: ImageNet-format TFRecords (sharded per rank) and synthetic batches.

Record format (as written by TF's ``build_imagenet_data.py`` and by
:mod:`.generate_data`): ``image/encoded`` (JPEG bytes) and ``image/class/label``
(int64, 1-based: 0 is the unused background class, hence ``label_offset=1``).
"""

from __future__ import annotations

import glob
import os

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE

# ImageNet channel statistics on the 0..255 scale.
_MEAN = (123.68, 116.78, 103.94)
_STD = (58.40, 57.12, 57.38)

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
}


def list_record_files(directory: str) -> list[str]:
    """TFRecord files in ``directory`` (recursively), sorted so every rank sees one order."""
    files = sorted(
        path
        for path in glob.glob(os.path.join(directory, "**", "*"), recursive=True)
        if os.path.isfile(path) and not os.path.basename(path).startswith(".")
    )
    if not files:
        raise FileNotFoundError(f"no TFRecord files under {directory!r}")
    return files


def shard_files(files: list[str], rank: int, size: int) -> tuple[list[str], bool]:
    """This rank's files; ``(all files, True)`` when there are fewer files than ranks.

    With at least one file per rank each rank reads a disjoint set of whole files (no
    rank reads bytes it throws away). With fewer files, every rank reads all of them
    and keeps every ``size``-th record instead (the second return value says so).
    """
    if len(files) >= size:
        return files[rank::size], False
    return files, True


def count_records(files: list[str]) -> int:
    """Number of records in ``files`` (reads them all: pass the count for real ImageNet)."""
    return int(tf.data.TFRecordDataset(files).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))


def _normalize(image: tf.Tensor, dtype: tf.DType) -> tf.Tensor:
    image = (tf.cast(image, tf.float32) - _MEAN) / _STD
    return tf.cast(image, dtype)


def _parse(record: tf.Tensor, label_offset: int) -> tuple[tf.Tensor, tf.Tensor]:
    parsed = tf.io.parse_single_example(record, _FEATURES)
    label = tf.cast(parsed["image/class/label"], tf.int32) - label_offset
    return parsed["image/encoded"], label


def _train_image(encoded: tf.Tensor, image_size: int, min_area: float) -> tf.Tensor:
    """Inception-style random-area crop, decoded only inside the crop, resize, flip."""
    shape = tf.image.extract_jpeg_shape(encoded)
    begin, size, _ = tf.image.sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    window = tf.stack([begin[0], begin[1], size[0], size[1]])
    image = tf.image.decode_and_crop_jpeg(encoded, window, channels=3)
    image = tf.image.resize(image, [image_size, image_size], antialias=False)
    return tf.image.random_flip_left_right(image)


def _eval_image(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
    """Central crop of 87.5% (the standard 224-of-256 ratio), resized."""
    image = tf.io.decode_jpeg(encoded, channels=3)
    image = tf.image.central_crop(image, 0.875)
    return tf.image.resize(image, [image_size, image_size])


def tfrecord_dataset(
    directory: str,
    batch_size: int,
    image_size: int,
    rank: int,
    size: int,
    training: bool,
    label_offset: int = 1,
    dtype: tf.DType = tf.float32,
    min_crop_area: float = 0.08,
    shuffle_buffer: int = 10_000,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batched ``(images, labels)`` for this rank, repeating forever.

    Files are interleaved (parallel reads of several shards, so one slow file does not
    stall the batch), decoded and augmented with an AUTOTUNE map, batched with a fixed
    shape (``drop_remainder``: every rank runs the same number of identical-shape steps,
    which the allreduce needs) and prefetched to overlap the accelerator's step.
    """
    files, shard_records = shard_files(list_record_files(directory), rank, size)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    ds = ds.repeat()
    ds = ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=8 << 20),
        cycle_length=min(len(files), 16),
        block_length=1,
        num_parallel_calls=AUTOTUNE,
        deterministic=False,
    )
    if shard_records:
        ds = ds.shard(size, rank)
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed)

    def _map(record: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        encoded, label = _parse(record, label_offset)
        image = _train_image(encoded, image_size, min_crop_area) if training else _eval_image(encoded, image_size)
        return _normalize(image, dtype), label

    ds = ds.map(_map, num_parallel_calls=AUTOTUNE, deterministic=False)
    ds = ds.batch(batch_size, drop_remainder=True)
    options = tf.data.Options()
    options.experimental_deterministic = False
    options.threading.max_intra_op_parallelism = 1  # parallelism comes from the map
    ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)


def synthetic_dataset(
    batch_size: int, image_size: int, num_classes: int, dtype: tf.DType = tf.float32
) -> tf.data.Dataset:
    """One random batch repeated forever: measures the model alone (no input cost)."""
    images = tf.random.truncated_normal([batch_size, image_size, image_size, 3], dtype=tf.float32)
    labels = tf.random.uniform([batch_size], maxval=num_classes, dtype=tf.int32)
    ds = tf.data.Dataset.from_tensors((tf.cast(images, dtype), labels)).repeat()
    return ds.prefetch(AUTOTUNE)
