-- 0003 (TimescaleDB Apache edition, and plain PostgreSQL): each agent's day
-- as materialized views that the sink refreshes (the Apache edition has no
-- continuous aggregates, compression or retention policies). Same names and
-- columns as the community edition's continuous aggregates; day is the UTC
-- day, as time_bucket('1 day') gives there.

CREATE MATERIALIZED VIEW agent_daily_actions AS
SELECT date_trunc('day', event_time, 'UTC') AS day,
       run_id,
       agent,
       count(*) AS actions,
       count(*) FILTER (WHERE kind = 'buy') AS buys,
       count(*) FILTER (WHERE kind = 'sell') AS sells,
       count(*) FILTER (WHERE kind = 'hold') AS holds,
       avg(action_raw) AS mean_raw,
       avg(action_smoothed) AS mean_smoothed
FROM decisions
GROUP BY 1, 2, 3;
CREATE UNIQUE INDEX agent_daily_actions_key ON agent_daily_actions (run_id, agent, day);

CREATE MATERIALIZED VIEW agent_daily_trades AS
SELECT date_trunc('day', event_time, 'UTC') AS day,
       run_id,
       agent,
       count(*) AS trades,
       count(*) FILTER (WHERE side = 'buy') AS buys,
       count(*) FILTER (WHERE side = 'sell') AS sells,
       coalesce(sum(notional) FILTER (WHERE side = 'buy'), 0) AS bought,
       coalesce(sum(notional) FILTER (WHERE side = 'sell'), 0) AS sold,
       sum(fee) AS fees
FROM fills
GROUP BY 1, 2, 3;
CREATE UNIQUE INDEX agent_daily_trades_key ON agent_daily_trades (run_id, agent, day);

CREATE MATERIALIZED VIEW agent_daily_positions AS
SELECT DISTINCT ON (run_id, agent, date_trunc('day', event_time, 'UTC'))
       date_trunc('day', event_time, 'UTC') AS day,
       run_id,
       agent,
       quantity,
       cost,
       market_value,
       unrealized_pnl
FROM holdings
ORDER BY run_id, agent, date_trunc('day', event_time, 'UTC'), event_time DESC;
CREATE UNIQUE INDEX agent_daily_positions_key ON agent_daily_positions (run_id, agent, day);
