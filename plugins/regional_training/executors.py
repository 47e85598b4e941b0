"""Old path of :mod:`regional_training.runtime.executors` (issue 28):
deployments name it in ``[core] executor``.
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.runtime.executors")
