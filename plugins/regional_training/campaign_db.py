"""Old path of :mod:`regional_training.runtime.campaign_db` (issue 28):
deployments name it as ``python -m`` (the compose file's init container).
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.runtime.campaign_db")
