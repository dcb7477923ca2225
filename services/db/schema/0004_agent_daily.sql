-- 0004 (every path): an agent's day in one relation, with its P&L.
--
-- pnl is the day's change in the position's market value plus the day's cash
-- flows (sales less purchases and fees), so an agent's pnl summed over a run
-- is its realised plus unrealised P&L at the run's last mark.
CREATE VIEW agent_daily AS
WITH days AS (
    SELECT day, run_id, agent FROM agent_daily_actions
    UNION
    SELECT day, run_id, agent FROM agent_daily_trades
    UNION
    SELECT day, run_id, agent FROM agent_daily_positions
)
SELECT d.day,
       d.run_id,
       d.agent,
       coalesce(a.actions, 0) AS actions,
       coalesce(a.buys, 0) AS buy_actions,
       coalesce(a.sells, 0) AS sell_actions,
       coalesce(a.holds, 0) AS hold_actions,
       a.mean_raw,
       a.mean_smoothed,
       coalesce(t.trades, 0) AS trades,
       coalesce(t.bought, 0) AS bought,
       coalesce(t.sold, 0) AS sold,
       coalesce(t.fees, 0) AS fees,
       coalesce(p.quantity, 0) AS quantity,
       coalesce(p.market_value, 0) AS market_value,
       coalesce(p.market_value, 0)
         - coalesce(lag(coalesce(p.market_value, 0)) OVER w, 0)
         + coalesce(t.sold, 0) - coalesce(t.bought, 0) - coalesce(t.fees, 0) AS pnl
FROM days d
LEFT JOIN agent_daily_actions a USING (day, run_id, agent)
LEFT JOIN agent_daily_trades t USING (day, run_id, agent)
LEFT JOIN agent_daily_positions p USING (day, run_id, agent)
WINDOW w AS (PARTITION BY d.run_id, d.agent ORDER BY d.day);
