"""Airflow and boto plumbing: hooks, sessions, clients, the campaign database, settings,
executors. Imports no other room.

Layers, lowest first: runtime < cli < run < plan < report < launch < record
< the package's top level (tests/unit/test_import_graph.py; issue 28).
"""
