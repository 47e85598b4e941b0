"""Old path of :mod:`regional_training.report.links` (issue 28):
deployments name it in serialized DAGs' operator extra links.
"""

from regional_training.runtime.old_paths import alias

alias(__name__, "regional_training.report.links")
