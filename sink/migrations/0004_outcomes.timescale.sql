-- TimescaleDB: outcomes as a hypertable on the event bar's open time (small rows, like
-- patterns: a month per chunk).
SELECT create_hypertable('outcomes', by_range('open_time', INTERVAL '30 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
