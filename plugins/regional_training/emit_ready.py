"""Old path of :mod:`regional_training.cli.emit_ready` (issue 28):
deployments name it as ``python -m``.
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.cli.emit_ready")
