-- Training targets for one DAG run: for each selected campaign's newest dataset, the
-- copy in the campaign's own (recording) region, if that region is allowed.
--
-- Parameters (psycopg2 named binds):
--   campaign_keys  text[]  campaigns to train on; empty = every 'ready' campaign
--   region_codes   text[]  region allow-list; empty = every training-enabled region
WITH newest_dataset AS (
    SELECT DISTINCT ON (d.campaign_id)
           d.dataset_id, d.campaign_id, d.dataset_key, d.record_count, d.size_bytes
      FROM datasets AS d
     ORDER BY d.campaign_id, d.created_at DESC, d.dataset_id DESC
)
SELECT r.region_code,
       dc.s3_uri,
       c.campaign_key,
       nd.dataset_key,
       nd.dataset_id,
       dc.copy_id,
       nd.record_count,
       r.output_bucket
  FROM campaigns AS c
  JOIN newest_dataset AS nd ON nd.campaign_id = c.campaign_id
  JOIN dataset_copies AS dc ON dc.dataset_id = nd.dataset_id
                           AND dc.region_code = c.recorded_region
                           AND dc.status = 'available'
  JOIN regions AS r ON r.region_code = dc.region_code
 WHERE r.training_enabled
   AND (cardinality(%(campaign_keys)s::text[]) = 0
        AND c.status = 'ready'
        OR c.campaign_key = ANY (%(campaign_keys)s::text[]))
   AND (cardinality(%(region_codes)s::text[]) = 0
        OR r.region_code = ANY (%(region_codes)s::text[]))
 ORDER BY r.region_code, c.campaign_key, nd.dataset_key;
