-- Start recording a refresh inside its own transaction; the history triggers (V009)
-- read the id back through the transaction-local setting mrt.limits_refresh_id.
WITH refresh AS (
    INSERT INTO limits_refreshes (kind, started_at, outcome)
    VALUES (%(kind)s, %(started_at)s, 'applied')
    RETURNING refresh_id
)
SELECT refresh_id, set_config('mrt.limits_refresh_id', refresh_id::text, true) FROM refresh;
