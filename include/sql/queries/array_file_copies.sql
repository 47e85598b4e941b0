-- The dataset copies a user's array file names (the Param array_file), with what a
-- target needs: its dataset and campaign, and the output bucket of the copy's region.
-- Copies the database does not know are absent (the caller names the line).
--
-- Parameters (psycopg2 named binds):
--   s3_uris  text[]  the lines' dataset URIs
SELECT dc.s3_uri,
       dc.region_code,
       dc.copy_id,
       dc.status AS copy_status,
       d.dataset_id,
       d.dataset_key,
       c.campaign_key,
       r.output_bucket
  FROM dataset_copies AS dc
  JOIN datasets AS d ON d.dataset_id = dc.dataset_id
  JOIN campaigns AS c ON c.campaign_id = d.campaign_id
  JOIN regions AS r ON r.region_code = dc.region_code
 WHERE dc.s3_uri = ANY (%(s3_uris)s::text[])
 ORDER BY dc.s3_uri;
