"""Old path of :mod:`regional_training.runtime.celery_config` (issue 28):
deployments name it in ``[celery] celery_config_options``.
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.runtime.celery_config")
