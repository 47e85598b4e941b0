"""One DAG run: its context, task ids and XCom keys, S3 layout, and the assets it declares.
Above runtime and cli.

Layers, lowest first: runtime < cli < run < plan < report < launch < record
< the package's top level (tests/unit/test_import_graph.py; issue 28).
"""
