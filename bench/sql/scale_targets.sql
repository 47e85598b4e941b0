-- bench/services_scale.py only: (extra) more ready campaigns, one dataset and one
-- available copy each, spread over the sample regions, and room for them in every
-- region's quota of (instance_type), so the placement keeps every one of them.
-- Run after the sample data; idempotent.
INSERT INTO campaigns (campaign_key, recorded_region, recorded_from, recorded_to, vehicle_fleet, status)
SELECT format('scale-%%s', i), r.region_code, date '2026-01-01', date '2026-01-31', 'bench', 'ready'
  FROM generate_series(1, %(extra)s) AS i
  JOIN (SELECT region_code, row_number() OVER (ORDER BY region_code) - 1 AS k,
               count(*) OVER () AS n
          FROM regions WHERE training_enabled) AS r
    ON r.k = i %% r.n
ON CONFLICT (campaign_key) DO NOTHING;

INSERT INTO datasets (campaign_id, dataset_key, label_schema, record_count, size_bytes)
SELECT c.campaign_id, c.campaign_key || '-v1', 'imagenet-tfrecord-v1', 1000, 1000000
  FROM campaigns AS c WHERE c.vehicle_fleet = 'bench'
ON CONFLICT (campaign_id, dataset_key) DO NOTHING;

INSERT INTO dataset_copies (dataset_id, region_code, s3_uri, status, synced_at)
SELECT d.dataset_id, c.recorded_region,
       format('s3://mrt-campaign-data-%%s/datasets/%%s/%%s/', c.recorded_region, c.campaign_key, d.dataset_key),
       'available', timestamptz '2026-09-01'
  FROM datasets AS d JOIN campaigns AS c USING (campaign_id)
 WHERE c.vehicle_fleet = 'bench'
ON CONFLICT (dataset_id, region_code) DO NOTHING;

UPDATE instance_capacity
   SET quota_instances = greatest(quota_instances, %(quota)s)
 WHERE instance_type = %(instance_type)s;
