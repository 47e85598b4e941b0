-- Apply on-demand prices read from the Price List API (%(prices)s: a JSON array of
-- {region_code, instance_type, usd_per_hour, sku}). A row marked manual_wins is kept (counted);
-- an unchanged price writes nothing; a new (region, type) gets the table's defaults for
-- what the Price List does not say (reserved price 0, spot allowance) and no capacity row,
-- so it stays quota 0 (never placed) until a quota arrives.
WITH incoming AS (
    SELECT q.region_code, q.instance_type, q.usd_per_hour, q.sku
      FROM jsonb_to_recordset(%(prices)s::jsonb)
           AS q(region_code text, instance_type text, usd_per_hour numeric, sku text)
), kept AS (
    SELECT count(*) AS n
      FROM incoming AS i
      JOIN instance_pricing AS p USING (region_code, instance_type)
     WHERE p.manual_wins AND p.on_demand_usd_per_hour IS DISTINCT FROM round(i.usd_per_hour, 4)
), changed AS (
    INSERT INTO instance_pricing AS p (region_code, instance_type, on_demand_usd_per_hour, source, price_sku,
                                       updated_at)
    SELECT i.region_code, i.instance_type, round(i.usd_per_hour, 4), 'price_list', i.sku, now()
      FROM incoming AS i
    ON CONFLICT (region_code, instance_type) DO UPDATE
       SET on_demand_usd_per_hour = EXCLUDED.on_demand_usd_per_hour, source = EXCLUDED.source,
           price_sku = EXCLUDED.price_sku, updated_at = EXCLUDED.updated_at
     WHERE NOT p.manual_wins
       AND (p.on_demand_usd_per_hour, p.source, p.price_sku)
           IS DISTINCT FROM (EXCLUDED.on_demand_usd_per_hour, EXCLUDED.source, EXCLUDED.price_sku)
    RETURNING 1
)
SELECT (SELECT count(*) FROM changed) AS rows_changed, (SELECT n FROM kept) AS rows_kept_manual;
