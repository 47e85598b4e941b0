-- Every region the campaign database knows (the region allow-list is checked against it).
SELECT region_code FROM regions ORDER BY region_code;
