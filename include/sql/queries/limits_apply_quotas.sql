-- Apply quotas read from Service Quotas (%(quotas)s: a JSON array of {region_code,
-- instance_type, quota_instances, quota_code}). A row marked manual_wins is kept as it is
-- (counted); an unchanged figure writes nothing (no history row); a capacity row needs a
-- price row (instance_capacity's foreign key), so a type never priced in a region gets
-- none. reserved_instances is not a quota: a refresh never touches it.
WITH incoming AS (
    SELECT q.region_code, q.instance_type, q.quota_instances, q.quota_code
      FROM jsonb_to_recordset(%(quotas)s::jsonb)
           AS q(region_code text, instance_type text, quota_instances integer, quota_code text)
), kept AS (
    SELECT count(*) AS n
      FROM incoming AS i
      JOIN instance_capacity AS c USING (region_code, instance_type)
     WHERE c.manual_wins AND c.quota_instances IS DISTINCT FROM i.quota_instances
), changed AS (
    INSERT INTO instance_capacity AS c (region_code, instance_type, quota_instances, source, quota_code, updated_at)
    SELECT i.region_code, i.instance_type, i.quota_instances, 'service_quotas', i.quota_code, now()
      FROM incoming AS i
      JOIN instance_pricing AS p USING (region_code, instance_type)
    ON CONFLICT (region_code, instance_type) DO UPDATE
       SET quota_instances = EXCLUDED.quota_instances, source = EXCLUDED.source,
           quota_code = EXCLUDED.quota_code, updated_at = EXCLUDED.updated_at
     WHERE NOT c.manual_wins
       AND (c.quota_instances, c.source, c.quota_code)
           IS DISTINCT FROM (EXCLUDED.quota_instances, EXCLUDED.source, EXCLUDED.quota_code)
    RETURNING 1
)
SELECT (SELECT count(*) FROM changed) AS rows_changed, (SELECT n FROM kept) AS rows_kept_manual;
