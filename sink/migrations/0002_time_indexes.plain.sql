-- Plain PostgreSQL (no TimescaleDB): BRIN indexes on time, tiny and right for append-mostly
-- data that arrives roughly in time order; (symbol, time) lookups use the unique keys.
CREATE INDEX IF NOT EXISTS ticks_time_brin ON ticks USING brin (time);
CREATE INDEX IF NOT EXISTS bars_open_time_brin ON bars USING brin (open_time);
CREATE INDEX IF NOT EXISTS patterns_open_time_brin ON patterns USING brin (open_time);
CREATE INDEX IF NOT EXISTS signals_time_brin ON signals USING brin (time);
CREATE INDEX IF NOT EXISTS signals_symbol_time ON signals (exchange, symbol, time DESC);
