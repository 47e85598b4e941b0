"""Old path of :mod:`regional_training.runtime.campaign_db` (issue 28):
deployments name it as ``python -m`` (the compose file's init container).

Re-export only: the old name is the same module object, so a classpath read from
configuration or the metadata database resolves to the class the code defines.
"""

import runpy
import sys

if __name__ == "__main__":  # ``python -m regional_training.campaign_db``
    runpy.run_module("regional_training.runtime.campaign_db", run_name="__main__", alter_sys=True)
else:
    from regional_training.runtime import campaign_db as _moved

    sys.modules[__name__] = _moved
