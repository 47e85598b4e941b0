"""Old path of :mod:`regional_training.launch.batch_jobs` (issue 28):
deployments name it in stored trigger classpaths and serialized DAGs.

Re-export only: the old name is the same module object, so a classpath read from
configuration or the metadata database resolves to the class the code defines.
"""

import runpy
import sys

if __name__ == "__main__":  # ``python -m regional_training.batch_jobs``
    runpy.run_module("regional_training.launch.batch_jobs", run_name="__main__", alter_sys=True)
else:
    from regional_training.launch import batch_jobs as _moved

    sys.modules[__name__] = _moved
