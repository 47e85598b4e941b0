"""Old path of :mod:`regional_training.launch.batch_launcher` (issue 28):
deployments name it as ``python -m`` in registered Batch job definitions.
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.launch.batch_launcher")
