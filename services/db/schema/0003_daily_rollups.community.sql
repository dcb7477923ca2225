-- 0003 (TimescaleDB community edition, timescaledb.license = 'timescale'):
-- continuous aggregates of each agent's day, compression and retention.
--
-- The three rollups have the same names and columns on every path (the
-- Apache edition and plain PostgreSQL get materialized views instead), and
-- the view agent_daily joins them, so every query and panel works on all.
-- They are real-time aggregates (materialized_only = false); the sink also
-- refreshes them when a run closes, and a policy every minute.

CREATE MATERIALIZED VIEW agent_daily_actions
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', event_time) AS day,
       run_id,
       agent,
       count(*) AS actions,
       count(*) FILTER (WHERE kind = 'buy') AS buys,
       count(*) FILTER (WHERE kind = 'sell') AS sells,
       count(*) FILTER (WHERE kind = 'hold') AS holds,
       avg(action_raw) AS mean_raw,
       avg(action_smoothed) AS mean_smoothed
FROM decisions
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW agent_daily_trades
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', event_time) AS day,
       run_id,
       agent,
       count(*) AS trades,
       count(*) FILTER (WHERE side = 'buy') AS buys,
       count(*) FILTER (WHERE side = 'sell') AS sells,
       coalesce(sum(notional) FILTER (WHERE side = 'buy'), 0) AS bought,
       coalesce(sum(notional) FILTER (WHERE side = 'sell'), 0) AS sold,
       sum(fee) AS fees
FROM fills
GROUP BY 1, 2, 3
WITH NO DATA;

CREATE MATERIALIZED VIEW agent_daily_positions
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT time_bucket(INTERVAL '1 day', event_time) AS day,
       run_id,
       agent,
       last(quantity, event_time) AS quantity,
       last(cost, event_time) AS cost,
       last(market_value, event_time) AS market_value,
       last(unrealized_pnl, event_time) AS unrealized_pnl
FROM holdings
GROUP BY 1, 2, 3
WITH NO DATA;

SELECT add_continuous_aggregate_policy(name, start_offset => NULL, end_offset => NULL,
                                       schedule_interval => INTERVAL '1 minute')
FROM unnest(ARRAY['agent_daily_actions', 'agent_daily_trades', 'agent_daily_positions']) AS name;

-- Compression: chunks whose event time is over 30 days old, segmented by run
-- so one run's rows stay together (and a rebuild touches few segments).
-- Replayed history is years old, so its chunks compress at the policy's next
-- run; writes and deletes still work on compressed chunks (TimescaleDB 2.11+).
ALTER TABLE bars SET (timescaledb.compress, timescaledb.compress_segmentby = 'run_id, symbol', timescaledb.compress_orderby = 'event_time, event_id');
ALTER TABLE actions SET (timescaledb.compress, timescaledb.compress_segmentby = 'run_id, agent', timescaledb.compress_orderby = 'event_time, event_id');
ALTER TABLE decisions SET (timescaledb.compress, timescaledb.compress_segmentby = 'run_id, agent', timescaledb.compress_orderby = 'event_time, event_id');
ALTER TABLE fills SET (timescaledb.compress, timescaledb.compress_segmentby = 'run_id, symbol', timescaledb.compress_orderby = 'event_time, event_id');
ALTER TABLE marks SET (timescaledb.compress, timescaledb.compress_segmentby = 'run_id', timescaledb.compress_orderby = 'event_time, event_id');
ALTER TABLE holdings SET (timescaledb.compress, timescaledb.compress_segmentby = 'run_id, symbol', timescaledb.compress_orderby = 'event_time, mark_id');
SELECT add_compression_policy(name, INTERVAL '30 days')
FROM unnest(ARRAY['bars', 'actions', 'decisions', 'fills', 'marks', 'holdings']) AS name;

-- Retention counts event time back from today, and the bundled history is
-- from 2009-2010: a short retention would drop a replay as soon as it is
-- written. So the policies (on the two largest tables, which the log can
-- give back while the topics keep them) are set at 50 years; lower them only
-- where the replayed data are recent.
SELECT add_retention_policy(name, INTERVAL '50 years')
FROM unnest(ARRAY['bars', 'actions']) AS name;
