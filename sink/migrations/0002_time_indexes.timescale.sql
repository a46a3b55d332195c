-- TimescaleDB (any edition): every table becomes a hypertable partitioned on its time column.
-- Chunk intervals aim at chunks that fit in memory at the expected rates: ticks are the bulk
-- (a day per chunk), bars, patterns and signals are small (a week or a month per chunk).
SELECT create_hypertable('ticks', by_range('time', INTERVAL '1 day'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('bars', by_range('open_time', INTERVAL '7 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('patterns', by_range('open_time', INTERVAL '30 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
SELECT create_hypertable('signals', by_range('time', INTERVAL '30 days'),
                         if_not_exists => TRUE, migrate_data => TRUE);
CREATE INDEX IF NOT EXISTS signals_symbol_time ON signals (exchange, symbol, time DESC);
