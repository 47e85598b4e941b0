-- What a refresh of live quotas and prices covers (regional_training.plan.live_limits): every
-- known region x every instance type some row prices, optionally narrowed to the given
-- arrays (NULL: all), with the row each already has (NULL columns: none yet).
SELECT r.region_code, t.instance_type,
       c.quota_instances, c.source AS capacity_source, c.manual_wins AS capacity_manual_wins, c.quota_code,
       p.on_demand_usd_per_hour, p.source AS pricing_source, p.manual_wins AS pricing_manual_wins
  FROM regions AS r
 CROSS JOIN (SELECT DISTINCT instance_type FROM instance_pricing) AS t
  LEFT JOIN instance_capacity AS c ON c.region_code = r.region_code AND c.instance_type = t.instance_type
  LEFT JOIN instance_pricing AS p ON p.region_code = r.region_code AND p.instance_type = t.instance_type
 WHERE (%(regions)s::text[] IS NULL OR r.region_code = ANY (%(regions)s::text[]))
   AND (%(instance_types)s::text[] IS NULL OR t.instance_type = ANY (%(instance_types)s::text[]))
 ORDER BY r.region_code, t.instance_type;
