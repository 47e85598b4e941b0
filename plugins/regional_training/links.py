"""Old path of :mod:`regional_training.report.links` (issue 28):
deployments name it in serialized DAGs' operator extra links.

Re-export only: the old name is the same module object, so a classpath read from
configuration or the metadata database resolves to the class the code defines.
"""

import runpy
import sys

if __name__ == "__main__":  # ``python -m regional_training.links``
    runpy.run_module("regional_training.report.links", run_name="__main__", alter_sys=True)
else:
    from regional_training.report import links as _moved

    sys.modules[__name__] = _moved
