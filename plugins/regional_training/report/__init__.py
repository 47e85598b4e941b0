"""Reading and rendering results: the report, summaries, verdicts, console links,
notifications. Above plan; writes nothing but what it renders.

Layers, lowest first: runtime < cli < run < plan < report < launch < record
< the package's top level (tests/unit/test_import_graph.py; issue 28).
"""
