-- Sample campaign metadata for the seed's four regions: one ready campaign recorded in
-- each, one labelled dataset each, a copy in the recording region (and, for two of
-- them, a replica elsewhere, which the region-local choice must ignore). Idempotent.
INSERT INTO regions (region_code, display_name, output_bucket) VALUES
    ('us-east-1',    'US East (N. Virginia)', 'mrt-output-us-east-1'),
    ('us-west-2',    'US West (Oregon)',      'mrt-output-us-west-2'),
    ('eu-west-1',    'Europe (Ireland)',      'mrt-output-eu-west-1'),
    ('eu-central-1', 'Europe (Frankfurt)',    'mrt-output-eu-central-1')
ON CONFLICT (region_code) DO NOTHING;

INSERT INTO campaigns (campaign_key, recorded_region, recorded_from, recorded_to, vehicle_fleet, status) VALUES
    ('boston-winter-2026',   'us-east-1',    '2026-01-05', '2026-02-20', 'fleet-a', 'ready'),
    ('seattle-rain-2026',    'us-west-2',    '2026-03-01', '2026-04-15', 'fleet-b', 'ready'),
    ('dublin-urban-2026',    'eu-west-1',    '2026-05-02', '2026-06-10', 'fleet-c', 'ready'),
    ('munich-autobahn-2026', 'eu-central-1', '2026-06-15', '2026-07-30', 'fleet-d', 'ready'),
    ('berlin-night-2026',    'eu-central-1', '2026-10-01', '2026-11-20', 'fleet-d', 'labelling')
ON CONFLICT (campaign_key) DO NOTHING;

INSERT INTO datasets (campaign_id, dataset_key, label_schema, record_count, size_bytes, created_at)
SELECT c.campaign_id, v.dataset_key, 'imagenet-tfrecord-v1', v.record_count, v.size_bytes, v.created_at
  FROM (VALUES
    ('boston-winter-2026',   'boston-winter-2026-v1',   1200000, 151000000000, timestamptz '2026-03-01'),
    ('seattle-rain-2026',    'seattle-rain-2026-v1',     980000, 124000000000, timestamptz '2026-05-01'),
    ('dublin-urban-2026',    'dublin-urban-2026-v1',     870000, 110000000000, timestamptz '2026-07-01'),
    ('munich-autobahn-2026', 'munich-autobahn-2026-v1', 1400000, 176000000000, timestamptz '2026-08-20'),
    ('berlin-night-2026',    'berlin-night-2026-v1',     300000,  38000000000, timestamptz '2026-11-25')
  ) AS v (campaign_key, dataset_key, record_count, size_bytes, created_at)
  JOIN campaigns AS c USING (campaign_key)
ON CONFLICT (campaign_id, dataset_key) DO NOTHING;

INSERT INTO dataset_copies (dataset_id, region_code, s3_uri, status, synced_at)
SELECT d.dataset_id, v.region_code,
       format('s3://mrt-campaign-data-%s/datasets/%s/%s/', v.region_code, c.campaign_key, d.dataset_key),
       v.status, timestamptz '2026-09-01'
  FROM (VALUES
    ('boston-winter-2026-v1',   'us-east-1',    'available'),
    ('boston-winter-2026-v1',   'us-west-2',    'available'),
    ('seattle-rain-2026-v1',    'us-west-2',    'available'),
    ('dublin-urban-2026-v1',    'eu-west-1',    'available'),
    ('dublin-urban-2026-v1',    'eu-central-1', 'syncing'),
    ('munich-autobahn-2026-v1', 'eu-central-1', 'available'),
    ('berlin-night-2026-v1',    'eu-central-1', 'available')
  ) AS v (dataset_key, region_code, status)
  JOIN datasets AS d USING (dataset_key)
  JOIN campaigns AS c ON c.campaign_id = d.campaign_id
ON CONFLICT (dataset_id, region_code) DO NOTHING;
