-- A copy's content version: when it was last synced (ISO 8601, UTC, microseconds), the
-- one format find_reusable.sql compares with. NULL (never synced) = never reused.
SELECT to_char(synced_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS dataset_version
FROM dataset_copies
WHERE copy_id = %(copy_id)s AND status = 'available';
