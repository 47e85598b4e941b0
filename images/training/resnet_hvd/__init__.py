"""ResNet-50 data-parallel training with Horovod (TF2), under SageMaker's container contract.

Modules: :mod:`.train` (entry point), :mod:`.data` (TFRecord / synthetic input),
:mod:`.model`, :mod:`.schedule` (learning rate), :mod:`.checkpoint` (spot-safe resume),
:mod:`.generate_data` (small ImageNet-format sample shards), :mod:`.metrics` (the shared
metric-line format).
"""
