"""What to train before any job exists: Params, targets, scans, selection, placement,
limits, reuse keys. Above run.

Layers, lowest first: runtime < cli < run < plan < report < launch < record
< the package's top level (tests/unit/test_import_graph.py; issue 28).
"""
