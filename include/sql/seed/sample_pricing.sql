-- Sample prices, spot observations, capacity and transfer costs for the four sample
-- regions (issue #6). Idempotent. Chosen so the placement is not the region-local one:
--   * us-west-2 holds 2 prepaid (0 USD/h) reserved ml.p4d.24xlarge: the first p4d
--     target with a copy there takes them, e.g. boston trains in Oregon, not Virginia;
--   * eu-west-1 has the cheapest spot p4d, but a quota of only 2 p4d instances;
--   * us-east-1's newest p4d spot price went up (the older, cheaper one is ignored);
--   * eu-central-1 is at quota for ml.p5.48xlarge (0) and has no p3 spot market.
-- Prices are USD per instance-hour, illustrative (close to public list prices).
INSERT INTO instance_pricing (region_code, instance_type, on_demand_usd_per_hour,
                              reserved_usd_per_hour, spot_interruption_allowance, updated_at) VALUES
    ('us-east-1',    'ml.p3.16xlarge',   28.1520, 0,  0.2500, '2026-12-01'),
    ('us-east-1',    'ml.p4d.24xlarge',  37.6885, 0,  0.3500, '2026-12-01'),
    ('us-east-1',    'ml.g5.48xlarge',   20.3600, 0,  0.2000, '2026-12-01'),
    ('us-east-1',    'ml.p5.48xlarge',  113.0700, 0,  0.4000, '2026-12-01'),
    ('us-east-1',    'ml.g5.12xlarge',    7.0900, 0,  0.1500, '2026-12-01'),
    ('us-west-2',    'ml.p3.16xlarge',   28.1520, 0,  0.2500, '2026-12-01'),
    ('us-west-2',    'ml.p4d.24xlarge',  37.6885, 0,  0.2500, '2026-12-01'),
    ('us-west-2',    'ml.g5.48xlarge',   20.3600, 0,  0.2000, '2026-12-01'),
    ('us-west-2',    'ml.p5.48xlarge',  113.0700, 62.5000, 0.4000, '2026-12-01'),
    ('us-west-2',    'ml.g5.12xlarge',    7.0900, 0,  0.1500, '2026-12-01'),
    ('eu-west-1',    'ml.p3.16xlarge',   30.5890, 0,  0.2500, '2026-12-01'),
    ('eu-west-1',    'ml.p4d.24xlarge',  41.4570, 0,  0.3000, '2026-12-01'),
    ('eu-west-1',    'ml.g5.48xlarge',   22.4000, 0,  0.2000, '2026-12-01'),
    ('eu-west-1',    'ml.p5.48xlarge',  124.3800, 0,  0.4000, '2026-12-01'),
    ('eu-west-1',    'ml.g5.12xlarge',    7.8000, 0,  0.1500, '2026-12-01'),
    ('eu-central-1', 'ml.p3.16xlarge',   30.9670, 0,  0.2500, '2026-12-01'),
    ('eu-central-1', 'ml.p4d.24xlarge',  42.1900, 0,  0.5000, '2026-12-01'),
    ('eu-central-1', 'ml.g5.48xlarge',   22.8000, 0,  0.2000, '2026-12-01'),
    ('eu-central-1', 'ml.p5.48xlarge',  126.6000, 0,  0.4000, '2026-12-01'),
    ('eu-central-1', 'ml.g5.12xlarge',    7.9400, 0,  0.1500, '2026-12-01')
ON CONFLICT (region_code, instance_type) DO NOTHING;

INSERT INTO spot_price_observations (region_code, instance_type, observed_at, usd_per_hour) VALUES
    ('us-east-1',    'ml.p3.16xlarge',  '2026-12-01 00:00+00',  9.8500),
    ('us-east-1',    'ml.p4d.24xlarge', '2026-11-30 00:00+00', 11.2000),
    ('us-east-1',    'ml.p4d.24xlarge', '2026-12-01 00:00+00', 16.9600),
    ('us-east-1',    'ml.g5.48xlarge',  '2026-12-01 00:00+00',  7.1300),
    ('us-east-1',    'ml.p5.48xlarge',  '2026-12-01 00:00+00', 45.2300),
    ('us-east-1',    'ml.g5.12xlarge',  '2026-12-01 00:00+00',  2.4800),
    ('us-west-2',    'ml.p3.16xlarge',  '2026-12-01 00:00+00',  8.4500),
    ('us-west-2',    'ml.p4d.24xlarge', '2026-12-01 00:00+00', 15.2000),
    ('us-west-2',    'ml.g5.48xlarge',  '2026-12-01 00:00+00',  6.1100),
    ('us-west-2',    'ml.p5.48xlarge',  '2026-12-01 00:00+00', 39.5700),
    ('us-west-2',    'ml.g5.12xlarge',  '2026-12-01 00:00+00',  2.1300),
    ('eu-west-1',    'ml.p3.16xlarge',  '2026-12-01 00:00+00', 10.7100),
    ('eu-west-1',    'ml.p4d.24xlarge', '2026-12-01 00:00+00', 11.5000),
    ('eu-west-1',    'ml.g5.48xlarge',  '2026-12-01 00:00+00',  7.8400),
    ('eu-west-1',    'ml.p5.48xlarge',  '2026-12-01 00:00+00', 49.7500),
    ('eu-west-1',    'ml.g5.12xlarge',  '2026-12-01 00:00+00',  2.7300),
    ('eu-central-1', 'ml.p4d.24xlarge', '2026-12-01 00:00+00', 14.1000),
    ('eu-central-1', 'ml.g5.48xlarge',  '2026-12-01 00:00+00',  8.2100),
    ('eu-central-1', 'ml.p5.48xlarge',  '2026-12-01 00:00+00', 50.6400),
    ('eu-central-1', 'ml.g5.12xlarge',  '2026-12-01 00:00+00',  2.7800)
ON CONFLICT (region_code, instance_type, observed_at) DO NOTHING;

INSERT INTO instance_capacity (region_code, instance_type, quota_instances, reserved_instances, updated_at) VALUES
    ('us-east-1',    'ml.p3.16xlarge',   8, 0, '2026-12-01'),
    ('us-east-1',    'ml.p4d.24xlarge',  4, 0, '2026-12-01'),
    ('us-east-1',    'ml.g5.48xlarge',   8, 0, '2026-12-01'),
    ('us-east-1',    'ml.p5.48xlarge',   2, 0, '2026-12-01'),
    ('us-east-1',    'ml.g5.12xlarge',  16, 0, '2026-12-01'),
    ('us-west-2',    'ml.p3.16xlarge',   8, 0, '2026-12-01'),
    ('us-west-2',    'ml.p4d.24xlarge',  8, 2, '2026-12-01'),
    ('us-west-2',    'ml.g5.48xlarge',   8, 0, '2026-12-01'),
    ('us-west-2',    'ml.p5.48xlarge',   4, 4, '2026-12-01'),
    ('us-west-2',    'ml.g5.12xlarge',  16, 4, '2026-12-01'),
    ('eu-west-1',    'ml.p3.16xlarge',   4, 0, '2026-12-01'),
    ('eu-west-1',    'ml.p4d.24xlarge',  2, 0, '2026-12-01'),
    ('eu-west-1',    'ml.g5.48xlarge',   4, 0, '2026-12-01'),
    ('eu-west-1',    'ml.p5.48xlarge',   2, 0, '2026-12-01'),
    ('eu-west-1',    'ml.g5.12xlarge',   8, 0, '2026-12-01'),
    ('eu-central-1', 'ml.p3.16xlarge',   4, 0, '2026-12-01'),
    ('eu-central-1', 'ml.p4d.24xlarge',  4, 0, '2026-12-01'),
    ('eu-central-1', 'ml.g5.48xlarge',   4, 0, '2026-12-01'),
    ('eu-central-1', 'ml.p5.48xlarge',   0, 0, '2026-12-01'),
    ('eu-central-1', 'ml.g5.12xlarge',   8, 0, '2026-12-01')
ON CONFLICT (region_code, instance_type) DO NOTHING;

INSERT INTO transfer_costs (source_region, dest_region, usd_per_gb)
SELECT s.region_code, d.region_code,
       CASE WHEN left(s.region_code, 2) = left(d.region_code, 2) THEN 0.02 ELSE 0.05 END
  FROM regions AS s
  JOIN regions AS d ON d.region_code <> s.region_code
 WHERE s.region_code IN ('us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-1')
   AND d.region_code IN ('us-east-1', 'us-west-2', 'eu-west-1', 'eu-central-1')
ON CONFLICT (source_region, dest_region) DO NOTHING;
