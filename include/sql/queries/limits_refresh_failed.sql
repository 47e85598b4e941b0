-- A refresh that changed nothing (a throttled, bad or partial answer), and why.
INSERT INTO limits_refreshes (kind, started_at, outcome, error)
VALUES (%(kind)s, %(started_at)s, 'failed', %(error)s);
