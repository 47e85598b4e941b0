"""Old path of :mod:`regional_training.runtime.executors` (issue 28):
deployments name it in ``[core] executor``.

Re-export only: the old name is the same module object, so a classpath read from
configuration or the metadata database resolves to the class the code defines.
"""

import runpy
import sys

if __name__ == "__main__":  # ``python -m regional_training.executors``
    runpy.run_module("regional_training.runtime.executors", run_name="__main__", alter_sys=True)
else:
    from regional_training.runtime import executors as _moved

    sys.modules[__name__] = _moved
