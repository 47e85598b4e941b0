"""Old path of :mod:`regional_training.launch.batch_jobs` (issue 28):
deployments name it in stored trigger classpaths and serialized DAGs.
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.launch.batch_jobs")
