-- Every region of the campaign database with its output bucket, whether it trains, and
-- the buckets its dataset copies live in (a user's array-file line is checked against
-- its region's row: an unknown region, a disabled one, a URI in another region's bucket).
SELECT r.region_code,
       r.output_bucket,
       r.training_enabled,
       coalesce(array_agg(DISTINCT split_part(substr(dc.s3_uri, 6), '/', 1)) FILTER (WHERE dc.s3_uri IS NOT NULL),
                '{}') AS data_buckets
  FROM regions AS r
  LEFT JOIN dataset_copies AS dc ON dc.region_code = r.region_code
 GROUP BY r.region_code, r.output_bucket, r.training_enabled
 ORDER BY r.region_code;
