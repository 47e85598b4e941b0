"""Multi-region distributed training: the logic behind the ``multi_region_training`` DAG.

Modules are small and free of import-time I/O so the DAG file parses fast; heavy
imports (boto3 clients, hooks) happen inside the functions that use them.
"""
