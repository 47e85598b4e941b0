"""What the deployment needs from the campaign-metadata database.

The regions that train (``regions.training_enabled``), their output buckets and the
buckets holding dataset copies. Functions take an open DB-API connection (psycopg2 in
practice), so the publish and render commands share them and tests can pass any
connection to a database migrated by ``regional_training.runtime.campaign_db``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

REGIONS_SQL = "SELECT region_code FROM regions WHERE training_enabled ORDER BY region_code"
OUTPUT_BUCKETS_SQL = "SELECT output_bucket FROM regions WHERE training_enabled ORDER BY output_bucket"
DATASET_COPY_URIS_SQL = (
    "SELECT dc.s3_uri FROM dataset_copies AS dc"
    " JOIN regions AS r ON r.region_code = dc.region_code"
    " WHERE r.training_enabled AND dc.status <> 'deleted'"
    " ORDER BY dc.s3_uri"
)


def _column(conn: Any, sql: str) -> list[str]:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return [row[0] for row in cur.fetchall()]
    finally:
        cur.close()


def regions(conn: Any) -> list[str]:
    """Training-enabled region codes, sorted."""
    return _column(conn, REGIONS_SQL)


def output_buckets(conn: Any) -> list[str]:
    """The training regions' output buckets (model artifacts, checkpoints), sorted."""
    return _column(conn, OUTPUT_BUCKETS_SQL)


def bucket_of(s3_uri: str) -> str:
    """``s3://bucket/key...`` -> ``bucket``."""
    parts = urlsplit(s3_uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3:// URI: {s3_uri!r}")
    return parts.netloc


def data_buckets(conn: Any) -> list[str]:
    """Buckets holding dataset copies in training regions, sorted, without repeats."""
    return sorted({bucket_of(uri) for uri in _column(conn, DATASET_COPY_URIS_SQL)})


def connect(dsn: str) -> Any:
    """A psycopg2 connection to the campaign-metadata database."""
    import psycopg2

    return psycopg2.connect(dsn)
