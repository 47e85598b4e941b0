"""Commands that run without Airflow (``python -m``), in the training container. Import
only :mod:`regional_training.runtime`.

Layers, lowest first: runtime < cli < run < plan < report < launch < record
< the package's top level (tests/unit/test_import_graph.py; issue 28).
"""
