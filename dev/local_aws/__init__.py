"""Local AWS for offline runs: a moto server whose SageMaker training jobs really run.

Development tooling only; never imported by ``dags/`` or ``plugins/``.
"""
