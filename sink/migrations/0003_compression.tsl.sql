-- TimescaleDB, Timescale-licensed edition only (compression, policies and continuous
-- aggregates are not in the Apache edition): native compression segmented by symbol, so a
-- query for one symbol decompresses only that symbol's segments, and a policy that
-- compresses chunks once they are no longer written to. Retention policies are added at sink
-- start from the RETENTION_* settings (sink/retention.py), since they are settings, not schema.
ALTER TABLE ticks SET (timescaledb.compress,
                       timescaledb.compress_segmentby = 'exchange, symbol',
                       timescaledb.compress_orderby = 'time DESC, trade_id');
SELECT add_compression_policy('ticks', INTERVAL '2 days', if_not_exists => TRUE);
ALTER TABLE bars SET (timescaledb.compress,
                      timescaledb.compress_segmentby = 'exchange, symbol, timeframe',
                      timescaledb.compress_orderby = 'open_time DESC');
SELECT add_compression_policy('bars', INTERVAL '30 days', if_not_exists => TRUE);

-- Hourly OHLCV rolled up from 1-minute bars, refreshed every 15 minutes: charts and
-- back-tests over months read this instead of 60x as many rows.
CREATE MATERIALIZED VIEW IF NOT EXISTS bars_1h WITH (timescaledb.continuous) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '1 hour', open_time) AS bucket,
       first(open, open_time)                  AS open,
       max(high)                               AS high,
       min(low)                                AS low,
       last(close, open_time)                  AS close,
       sum(volume)                             AS volume,
       sum(quote_volume)                       AS quote_volume,
       sum(trades)                             AS trades,
       sum(taker_buy_volume)                   AS taker_buy_volume
FROM bars
WHERE timeframe = '1m'
GROUP BY exchange, symbol, time_bucket(INTERVAL '1 hour', open_time)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('bars_1h',
                                       start_offset => INTERVAL '3 hours',
                                       end_offset => INTERVAL '1 hour',
                                       schedule_interval => INTERVAL '15 minutes',
                                       if_not_exists => TRUE);
