"""The module paths deployments named before the rooms (issue 28), kept working.

Configuration names classes by dotted path (``[core] executor``, ``[celery]
celery_config_options``, ``[aws] session_factory``), the metadata database stores trigger
classpaths for deferred tasks and serialized DAGs' extra links, and Batch job
definitions, the image and the compose file run ``python -m``. Each old path is a module
of one call to :func:`alias`.
"""

from __future__ import annotations

import importlib
import runpy
import sys


def alias(name: str, target: str) -> None:
    """Make the module being imported as ``name`` the module ``target`` (the same object,
    so a classpath read from configuration or the metadata database resolves to the class
    the code defines); run as ``python -m`` (``name`` is ``__main__``), run ``target`` as
    ``__main__``. Re-export only: no logic lives at an old path."""
    if name == "__main__":
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.modules[name] = importlib.import_module(target)
