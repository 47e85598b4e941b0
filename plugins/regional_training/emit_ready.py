"""Old path of :mod:`regional_training.cli.emit_ready` (issue 28):
deployments name it as ``python -m``.

Re-export only: the old name is the same module object, so a classpath read from
configuration or the metadata database resolves to the class the code defines.
"""

import runpy
import sys

if __name__ == "__main__":  # ``python -m regional_training.emit_ready``
    runpy.run_module("regional_training.cli.emit_ready", run_name="__main__", alter_sys=True)
else:
    from regional_training.cli import emit_ready as _moved

    sys.modules[__name__] = _moved
