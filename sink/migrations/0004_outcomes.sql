-- Issue 12 §1: forward outcomes of pattern events. One row per event bar and completed
-- horizon, in the long direction (common.contracts.BarOutcome): ret = close[t+h]/close[t]-1,
-- mfe = max(high[t+1..t+h])/close[t]-1, mae = min(low[t+1..t+h])/close[t]-1. A horizon not
-- reached yet has no row. The key makes a replayed or redelivered outcome a no-op.
CREATE TABLE IF NOT EXISTS outcomes (
    id           text             NOT NULL,
    exchange     text             NOT NULL,
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL,
    open_time    timestamptz      NOT NULL,
    horizon      integer          NOT NULL,
    close        double precision NOT NULL,
    ret          double precision NOT NULL,
    mfe          double precision NOT NULL,
    mae          double precision NOT NULL,
    trend        double precision,
    atr_ratio    double precision,
    volume_ratio double precision,
    cost_bps     double precision NOT NULL,
    CONSTRAINT outcomes_key UNIQUE (exchange, symbol, timeframe, open_time, horizon),
    CONSTRAINT outcomes_horizon_check CHECK (horizon >= 1),
    CONSTRAINT outcomes_close_check CHECK (close > 0 AND close < 'Infinity'),
    CONSTRAINT outcomes_path_check CHECK (
        ret > -1 AND ret < 'Infinity' AND mfe >= -1 AND mfe < 'Infinity' AND mae >= -1
        AND mae <= mfe AND cost_bps >= 0
    )
);

-- The outcomes contract (OUTCOMES_CONTRACT.md): one row per firing (a pattern on a bar, or a
-- signal) and completed horizon, in the firing's own direction d: ret = d*ret, for d = -1
-- mfe = -mae and mae = -mfe; hit = ret > cost_bps/1e4. signals.outcomes does the same in
-- Python for replay's outcomes.jsonl, so the two agree row for row.
CREATE OR REPLACE VIEW outcome_rows AS
SELECT 'pattern'::text                                          AS kind,
       o.id                                                     AS id,
       o.exchange, o.symbol, o.timeframe, o.open_time,
       p.pattern                                                AS pattern,
       CASE WHEN p.value > 0 THEN 'long' ELSE 'short' END       AS direction,
       o.horizon,
       CASE WHEN p.value > 0 THEN o.ret ELSE -o.ret END         AS ret,
       CASE WHEN p.value > 0 THEN o.mfe ELSE -o.mae END         AS mfe,
       CASE WHEN p.value > 0 THEN o.mae ELSE -o.mfe END         AS mae,
       (CASE WHEN p.value > 0 THEN o.ret ELSE -o.ret END)
           > o.cost_bps / 10000.0::double precision             AS hit,
       NULL::double precision                                   AS score,
       o.trend, o.atr_ratio, o.volume_ratio
FROM outcomes o
JOIN patterns p
  ON p.exchange = o.exchange AND p.symbol = o.symbol AND p.timeframe = o.timeframe
 AND p.open_time = o.open_time
UNION ALL
SELECT 'signal'::text,
       s.id,
       o.exchange, o.symbol, o.timeframe, o.open_time,
       NULL::text,
       s.direction,
       o.horizon,
       CASE WHEN s.direction = 'long' THEN o.ret ELSE -o.ret END,
       CASE WHEN s.direction = 'long' THEN o.mfe ELSE -o.mae END,
       CASE WHEN s.direction = 'long' THEN o.mae ELSE -o.mfe END,
       (CASE WHEN s.direction = 'long' THEN o.ret ELSE -o.ret END)
           > o.cost_bps / 10000.0::double precision,
       s.score,
       o.trend, o.atr_ratio, o.volume_ratio
FROM outcomes o
JOIN signals s
  ON s.exchange = o.exchange AND s.symbol = o.symbol AND s.timeframe = o.timeframe
 AND s.time = o.open_time AND s.open_time = o.open_time;
