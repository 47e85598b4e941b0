-- The datasets named by dataset-ready asset events (an asset-triggered run trains only
-- these): (campaign_key, dataset_key) pairs -> dataset_id. A pair with no row is unknown.
--   campaign_keys, dataset_keys  text[]  parallel arrays, one pair per event
SELECT c.campaign_key, d.dataset_key, d.dataset_id
  FROM unnest(%(campaign_keys)s::text[], %(dataset_keys)s::text[]) AS e (campaign_key, dataset_key)
  JOIN campaigns AS c ON c.campaign_key = e.campaign_key
  JOIN datasets AS d ON d.campaign_id = c.campaign_id AND d.dataset_key = e.dataset_key
 ORDER BY d.dataset_id;
