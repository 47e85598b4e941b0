"""ResNet v1.5 in Keras (TF 2.15 / Keras 2): ``resnet50`` and a tiny variant for CPU tests.

v1.5 (stride on the 3x3 conv of the bottleneck, as in NVIDIA's and MLPerf's reference)
rather than ``tf.keras.applications.ResNet50`` (v1, stride on the 1x1), because v1.5 is
what the published images/sec and accuracy anchors use. The last BatchNorm of every
residual branch starts at gamma=0, so each block starts as identity: that keeps the
large-batch (many GPUs x 256) warm-up stable (Goyal et al., 2017).
"""

from __future__ import annotations

import tensorflow as tf

layers = tf.keras.layers

#: name -> (blocks per stage, bottleneck?, stem width)
ARCHITECTURES: dict[str, tuple[tuple[int, ...], bool, int]] = {
    "resnet50": ((3, 4, 6, 3), True, 64),
    "resnet101": ((3, 4, 23, 3), True, 64),
    "resnet18": ((2, 2, 2, 2), False, 64),
    # Small enough that a CPU trains it on 32x32 images in seconds (tests, local stack).
    "resnet_tiny": ((1, 1, 1, 1), False, 8),
}

_BN = {"momentum": 0.9, "epsilon": 1e-5}


def _conv(filters: int, kernel: int, stride: int, name: str) -> layers.Conv2D:
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )


def _block(x: tf.Tensor, filters: int, stride: int, bottleneck: bool, name: str) -> tf.Tensor:
    out_filters = filters * 4 if bottleneck else filters
    shortcut = x
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = _conv(out_filters, 1, stride, f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(**_BN, name=f"{name}_proj_bn")(shortcut)
    if bottleneck:
        specs = [(filters, 1, 1), (filters, 3, stride), (out_filters, 1, 1)]
    else:
        specs = [(filters, 3, stride), (out_filters, 3, 1)]
    y = x
    for i, (f, k, s) in enumerate(specs):
        last = i == len(specs) - 1
        y = _conv(f, k, s, f"{name}_conv{i + 1}")(y)
        y = layers.BatchNormalization(
            **_BN, gamma_initializer="zeros" if last else "ones", name=f"{name}_bn{i + 1}"
        )(y)
        if not last:
            y = layers.ReLU(name=f"{name}_relu{i + 1}")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def build_model(name: str, num_classes: int, image_size: int) -> tf.keras.Model:
    """Return the named ResNet taking ``image_size``² RGB and returning float32 logits.

    Under a ``mixed_float16`` global policy the layers compute in float16; the final
    activation is pinned to float32 so the softmax cross-entropy stays numerically safe.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(ARCHITECTURES)}")
    blocks, bottleneck, width = ARCHITECTURES[name]
    inputs = tf.keras.Input(shape=(image_size, image_size, 3), name="images")
    x = _conv(width, 7, 2, "stem_conv")(inputs)
    x = layers.BatchNormalization(**_BN, name="stem_bn")(x)
    x = layers.ReLU(name="stem_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, n_blocks in enumerate(blocks):
        filters = width * 2**stage
        for b in range(n_blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            x = _block(x, filters, stride, bottleneck, f"stage{stage + 1}_block{b + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dense(
        num_classes,
        kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.01),
        name="logits",
    )(x)
    outputs = layers.Activation("linear", dtype="float32", name="logits_fp32")(x)
    return tf.keras.Model(inputs, outputs, name=name)


def l2_variables(model: tf.keras.Model) -> list[tf.Variable]:
    """Weights that get L2 weight decay: conv and dense kernels, not BN or biases."""
    return [v for v in model.trainable_variables if "kernel" in v.name]
