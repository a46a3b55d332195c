-- alphapulse tables: the public contract for people who query them (see docs/contracts.md, Tables).
-- Times are timestamptz (UTC); ticks keep microseconds (exchange nanoseconds are truncated).
-- CHECK constraints reject corrupt rows: the sink dead-letters such a row and stores the rest.
-- Every unique key includes the time column, as TimescaleDB requires of a hypertable.

CREATE TABLE IF NOT EXISTS ticks (
    time      timestamptz      NOT NULL,
    exchange  text             NOT NULL,
    symbol    text             NOT NULL,
    trade_id  text             NOT NULL,
    price     double precision NOT NULL,
    qty       double precision NOT NULL,
    side      text             NOT NULL,
    recv_time timestamptz      NOT NULL,
    CONSTRAINT ticks_key UNIQUE (exchange, symbol, trade_id, time),
    -- 'Infinity' bounds also reject NaN, which PostgreSQL sorts above every number.
    CONSTRAINT ticks_price_check CHECK (price > 0 AND price < 'Infinity'),
    CONSTRAINT ticks_qty_check CHECK (qty >= 0 AND qty < 'Infinity'),
    CONSTRAINT ticks_side_check CHECK (side IN ('buy', 'sell'))
);

CREATE TABLE IF NOT EXISTS bars (
    exchange         text             NOT NULL,
    symbol           text             NOT NULL,
    timeframe        text             NOT NULL,
    open_time        timestamptz      NOT NULL,
    open             double precision NOT NULL,
    high             double precision NOT NULL,
    low              double precision NOT NULL,
    close            double precision NOT NULL,
    volume           double precision NOT NULL,
    quote_volume     double precision NOT NULL,
    trades           bigint           NOT NULL,
    taker_buy_volume double precision NOT NULL,
    vwap             double precision NOT NULL,
    CONSTRAINT bars_key UNIQUE (exchange, symbol, timeframe, open_time),
    CONSTRAINT bars_ohlc_check CHECK (
        low > 0 AND high >= low AND high < 'Infinity'
        AND open BETWEEN low AND high AND close BETWEEN low AND high
    ),
    CONSTRAINT bars_volume_check CHECK (
        volume >= 0 AND volume < 'Infinity' AND quote_volume >= 0 AND quote_volume < 'Infinity'
        AND taker_buy_volume >= 0 AND taker_buy_volume < 'Infinity' AND trades >= 0
    )
);

CREATE TABLE IF NOT EXISTS patterns (
    exchange  text        NOT NULL,
    symbol    text        NOT NULL,
    timeframe text        NOT NULL,
    open_time timestamptz NOT NULL,
    pattern   text        NOT NULL,
    value     integer     NOT NULL,
    CONSTRAINT patterns_key UNIQUE (exchange, symbol, timeframe, open_time, pattern),
    -- TA-Lib gives +-100 or +-200 for a pattern that fired; 0 means it did not fire.
    CONSTRAINT patterns_value_check CHECK (value <> 0 AND value BETWEEN -200 AND 200)
);

-- One row per signal of the public `signals` stream (JSON contract v1, signals/schema).
-- `time` is the bar's open time (deterministic, so a replayed signal lands on the same key);
-- `doc` keeps the whole JSON so fields added to the contract later are not lost.
CREATE TABLE IF NOT EXISTS signals (
    id         text             NOT NULL,
    time       timestamptz      NOT NULL,
    exchange   text             NOT NULL,
    symbol     text             NOT NULL,
    timeframe  text             NOT NULL,
    open_time  timestamptz      NOT NULL,
    direction  text             NOT NULL,
    score      double precision NOT NULL,
    patterns   jsonb            NOT NULL,
    features   jsonb            NOT NULL,
    model      text,
    emitted_at timestamptz,
    doc        jsonb            NOT NULL,
    CONSTRAINT signals_key UNIQUE (id, time),
    CONSTRAINT signals_direction_check CHECK (direction IN ('long', 'short')),
    CONSTRAINT signals_score_check CHECK (score >= 0 AND score <= 1)
);
