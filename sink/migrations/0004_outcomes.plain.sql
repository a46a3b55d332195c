-- Plain PostgreSQL: a BRIN index on the event time (the unique key serves symbol lookups).
CREATE INDEX IF NOT EXISTS outcomes_open_time_brin ON outcomes USING brin (open_time);
