"""Old path of :mod:`regional_training.runtime.aws_sessions` (issue 28):
deployments name it in ``[aws] session_factory``.

Re-export only: the old name is the same module object, so a classpath read from
configuration or the metadata database resolves to the class the code defines.
"""

import runpy
import sys

if __name__ == "__main__":  # ``python -m regional_training.aws_sessions``
    runpy.run_module("regional_training.runtime.aws_sessions", run_name="__main__", alter_sys=True)
else:
    from regional_training.runtime import aws_sessions as _moved

    sys.modules[__name__] = _moved
