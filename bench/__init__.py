"""Benchmarks: each prints figures and asserts nothing. Run from the repository root as
modules, ``.venv/bin/python -m bench.<name> ...``, so ``dev`` and ``bench`` import as
packages with no ``PYTHONPATH``."""
