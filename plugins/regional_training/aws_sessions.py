"""Old path of :mod:`regional_training.runtime.aws_sessions` (issue 28):
deployments name it in ``[aws] session_factory``.
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.runtime.aws_sessions")
