"""Recording a run's results: collection, late recording, checkpoints carried, the run
summary written. Above launch; below the operators and tasks.

Layers, lowest first: runtime < cli < run < plan < report < launch < record
< the package's top level (tests/unit/test_import_graph.py; issue 28).
"""
