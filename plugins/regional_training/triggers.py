"""Old path of :mod:`regional_training.launch.triggers` (issue 28):
deployments name it in trigger classpaths stored for deferred tasks.
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.launch.triggers")
