-- Issue 12 §2: statistics as SQL over the outcomes contract (signals/analytics/db.py and
-- docs/statistics.md). Derived views only: nothing here is a counter that could drift.

-- Per pattern x direction x timeframe x horizon: n, hits, mean/median return, mean MFE/MAE.
-- (Wilson intervals, the baseline, the lift and "too few" are added by signals.analytics.db.)
CREATE OR REPLACE VIEW pattern_stats AS
SELECT pattern, direction, timeframe, horizon,
       count(*)                                               AS n,
       count(*) FILTER (WHERE hit)                            AS hits,
       avg(ret)                                               AS mean_ret,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ret)       AS median_ret,
       avg(mfe)                                               AS mean_mfe,
       avg(mae)                                               AS mean_mae
FROM outcome_rows
WHERE kind = 'pattern'
GROUP BY pattern, direction, timeframe, horizon;

-- The random-entry baseline of one horizon h: every bar of every series with its long
-- outcome, exactly the contract's definitions (bar t+h = the h-th later stored bar of the
-- same exchange, symbol and timeframe; a horizon past the last bar is left out).
-- Window frames need constant offsets, hence the dynamic SQL. The functions keep the
-- migration's search_path: PostgreSQL 17 refreshes materialized views under a safe one.
CREATE OR REPLACE FUNCTION baseline_outcomes(h integer)
RETURNS TABLE (exchange text, symbol text, timeframe text, open_time timestamptz,
               horizon integer, ret double precision, mfe double precision,
               mae double precision)
LANGUAGE plpgsql STABLE SET search_path FROM CURRENT AS $fn$
BEGIN
    IF h IS NULL OR h < 1 THEN
        RAISE EXCEPTION 'baseline_outcomes: horizon must be >= 1, got %', h;
    END IF;
    RETURN QUERY EXECUTE format($q$
        SELECT exchange, symbol, timeframe, open_time, %1$s AS horizon, ret, mfe, mae
        FROM (
            SELECT b.exchange, b.symbol, b.timeframe, b.open_time,
                   lead(b.close, %1$s) OVER w / b.close - 1 AS ret,
                   max(b.high) OVER f / b.close - 1         AS mfe,
                   min(b.low) OVER f / b.close - 1          AS mae
            FROM bars b
            WINDOW w AS (PARTITION BY b.exchange, b.symbol, b.timeframe ORDER BY b.open_time),
                   f AS (w ROWS BETWEEN 1 FOLLOWING AND %1$s FOLLOWING)
        ) x
        WHERE ret IS NOT NULL
    $q$, h);
END
$fn$;

-- Its summary per series and direction (short mirrors long: r = -r, mfe = -mae, mae = -mfe);
-- a hit is a return above cost (a fraction: OUTCOME_COST_BPS / 1e4).
CREATE OR REPLACE FUNCTION baseline_stats(h integer, cost double precision DEFAULT 0)
RETURNS TABLE (exchange text, symbol text, timeframe text, direction text, horizon integer,
               n bigint, hits bigint, sum_ret double precision, sum_mfe double precision,
               sum_mae double precision)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $fn$
    SELECT o.exchange, o.symbol, o.timeframe, d.direction, h,
           count(*),
           count(*) FILTER (WHERE d.sign * o.ret > cost),
           sum(d.sign * o.ret),
           sum(CASE WHEN d.sign > 0 THEN o.mfe ELSE -o.mae END),
           sum(CASE WHEN d.sign > 0 THEN o.mae ELSE -o.mfe END)
    FROM baseline_outcomes(h) o
    CROSS JOIN (VALUES ('long', 1.0::double precision), ('short', -1.0)) AS d(direction, sign)
    GROUP BY o.exchange, o.symbol, o.timeframe, d.direction
$fn$;

-- Pre-aggregated: the same sums per exchange and symbol as tables, so the pattern table reads
-- a few thousand rows instead of grouping millions (10M outcome rows: seconds -> milliseconds;
-- see docs/statistics.md). As of their last refresh: `alphapulse stats --db --refresh` or
-- SELECT refresh_outcome_stats(). No median here (it does not add up); the live view has it.
CREATE MATERIALIZED VIEW IF NOT EXISTS pattern_stats_agg AS
SELECT pattern, direction, timeframe, horizon, exchange, symbol,
       count(*)                    AS n,
       count(*) FILTER (WHERE hit) AS hits,
       sum(ret)                    AS sum_ret,
       sum(mfe)                    AS sum_mfe,
       sum(mae)                    AS sum_mae
FROM outcome_rows
WHERE kind = 'pattern'
GROUP BY pattern, direction, timeframe, horizon, exchange, symbol;
CREATE UNIQUE INDEX IF NOT EXISTS pattern_stats_agg_key
    ON pattern_stats_agg (pattern, direction, timeframe, horizon, exchange, symbol);

-- The random-entry baseline for every horizon the outcomes hold, at their cost.
CREATE MATERIALIZED VIEW IF NOT EXISTS baseline_stats_agg AS
SELECT b.*
FROM (SELECT DISTINCT horizon, cost_bps FROM outcomes) hs,
     LATERAL baseline_stats(hs.horizon, hs.cost_bps / 10000.0::double precision) b;
CREATE UNIQUE INDEX IF NOT EXISTS baseline_stats_agg_key
    ON baseline_stats_agg (exchange, symbol, timeframe, direction, horizon);

CREATE OR REPLACE FUNCTION refresh_outcome_stats() RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
BEGIN
    REFRESH MATERIALIZED VIEW CONCURRENTLY pattern_stats_agg;
    REFRESH MATERIALIZED VIEW CONCURRENTLY baseline_stats_agg;
END
$fn$;
