-- 0001 (every path): the projection's tables.
--
-- Every row is a projection of one event of the log and keyed by that
-- event's id, so writing the log twice writes nothing new. Times are the
-- event times of the bars (UTC). One agent serves one symbol: `agent` is the
-- symbol's agent (the collapse detector's `agent` label).

CREATE TABLE runs (
    run_id          text PRIMARY KEY,
    dataset         text,               -- data source (ReplayStarted)
    mode            text,               -- lockstep or paced
    symbols         text[],
    steps_total     integer,
    started_at      timestamptz,        -- event time of the first bar
    portfolio_id    text,               -- PortfolioOpened
    initial_cash    double precision,
    replayed_steps  integer,            -- ReplayFinished
    closed_at       timestamptz,        -- PortfolioClosed
    steps           integer,
    final_equity    double precision
);

-- The policies and model versions a run's agents served.
CREATE TABLE run_models (
    run_id          text NOT NULL,
    policy          text NOT NULL,
    policy_version  text NOT NULL,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    PRIMARY KEY (run_id, policy, policy_version)
);

CREATE TABLE bars (
    event_id    text NOT NULL,
    run_id      text NOT NULL,
    symbol      text NOT NULL,
    step        integer NOT NULL,
    event_time  timestamptz NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision NOT NULL,
    PRIMARY KEY (event_id, event_time),
    CONSTRAINT bars_prices CHECK (0 < low AND low <= least(open, close) AND greatest(open, close) <= high),
    CONSTRAINT bars_volume CHECK (volume >= 0)
);
CREATE INDEX bars_run_symbol_time ON bars (run_id, symbol, event_time);

CREATE TABLE actions (
    event_id        text NOT NULL,
    cause_id        text NOT NULL,
    run_id          text NOT NULL,
    agent           text NOT NULL,
    symbol          text NOT NULL,
    step            integer NOT NULL,
    event_time      timestamptz NOT NULL,
    action_raw      double precision NOT NULL,
    action_smoothed double precision NOT NULL,
    policy          text NOT NULL,
    policy_version  text NOT NULL,
    PRIMARY KEY (event_id, event_time),
    CONSTRAINT actions_range CHECK (action_raw BETWEEN -1 AND 1 AND action_smoothed BETWEEN -1 AND 1)
);
CREATE INDEX actions_run_agent_time ON actions (run_id, agent, event_time);

-- portfolio.events: the decisions, fills, skips and marks of the ledger.
CREATE TABLE decisions (
    event_id        text NOT NULL,
    cause_id        text NOT NULL,      -- the action
    run_id          text NOT NULL,
    agent           text NOT NULL,
    symbol          text NOT NULL,
    step            integer NOT NULL,
    event_time      timestamptz NOT NULL,
    action_raw      double precision NOT NULL,
    action_smoothed double precision NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('buy', 'sell', 'hold')),
    policy          text NOT NULL,
    policy_version  text NOT NULL,
    PRIMARY KEY (event_id, event_time)
);
CREATE INDEX decisions_run_agent_time ON decisions (run_id, agent, event_time);

CREATE TABLE fills (
    event_id            text NOT NULL,
    cause_id            text NOT NULL,  -- the decision
    run_id              text NOT NULL,
    agent               text NOT NULL,
    symbol              text NOT NULL,
    step                integer NOT NULL,
    event_time          timestamptz NOT NULL,
    side                text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity            double precision NOT NULL,
    price               double precision NOT NULL,
    notional            double precision NOT NULL,
    fee                 double precision NOT NULL,
    requested_quantity  double precision NOT NULL,
    clipped_by          text[] NOT NULL,   -- the gates that made it smaller (a clip)
    PRIMARY KEY (event_id, event_time)
);
CREATE INDEX fills_run_symbol_time ON fills (run_id, symbol, event_time);
CREATE INDEX fills_cause ON fills (cause_id);

CREATE TABLE skips (
    event_id            text NOT NULL,
    cause_id            text NOT NULL,
    run_id              text NOT NULL,
    agent               text NOT NULL,
    symbol              text NOT NULL,
    step                integer NOT NULL,
    event_time          timestamptz NOT NULL,
    side                text NOT NULL,
    reason              text NOT NULL,
    requested_quantity  double precision NOT NULL,
    PRIMARY KEY (event_id, event_time)
);
CREATE INDEX skips_run_time ON skips (run_id, event_time);

CREATE TABLE marks (
    event_id    text NOT NULL,
    cause_id    text NOT NULL,
    run_id      text NOT NULL,
    step        integer NOT NULL,
    event_time  timestamptz NOT NULL,
    bars        integer NOT NULL,
    cash        double precision NOT NULL,
    equity      double precision NOT NULL,
    PRIMARY KEY (event_id, event_time)
);
CREATE INDEX marks_run_step ON marks (run_id, step);

-- One row per symbol held at a mark (AccountMarked.holdings).
CREATE TABLE holdings (
    mark_id         text NOT NULL,
    run_id          text NOT NULL,
    agent           text NOT NULL,
    symbol          text NOT NULL,
    step            integer NOT NULL,
    event_time      timestamptz NOT NULL,
    quantity        double precision NOT NULL,
    cost            double precision NOT NULL,
    avg_cost        double precision NOT NULL,
    close           double precision NOT NULL,
    market_value    double precision NOT NULL,
    unrealized_pnl  double precision NOT NULL,
    PRIMARY KEY (mark_id, symbol, event_time)
);
CREATE INDEX holdings_run_symbol_time ON holdings (run_id, symbol, event_time);

-- monitor.alerts: CollapseDetected (state 'detected') and CollapseResolved ('resolved').
CREATE TABLE collapse_alerts (
    event_id        text PRIMARY KEY,
    cause_id        text NOT NULL,
    run_id          text NOT NULL,
    agent           text NOT NULL,
    event_time      timestamptz NOT NULL,
    state           text NOT NULL CHECK (state IN ('detected', 'resolved')),
    metric          text NOT NULL,
    severity        text NOT NULL,
    value           double precision NOT NULL,
    threshold       double precision NOT NULL,
    action_window   text NOT NULL,
    actions         integer NOT NULL
);
CREATE INDEX collapse_alerts_run_agent_time ON collapse_alerts (run_id, agent, event_time);

-- The plan's trade table (reference/continuous-action-strategy.md, "Data
-- Pipeline Updates"): one row per fill with the continuous action behind it.
CREATE TABLE rl_trades (
    trade_id        text PRIMARY KEY,   -- the fill's event id
    decision_id     text NOT NULL,
    run_id          text NOT NULL,
    agent           text NOT NULL,
    symbol          text NOT NULL,
    event_time      timestamptz NOT NULL,
    policy          text NOT NULL,
    model_version   text NOT NULL,
    action_raw      double precision NOT NULL,
    action_smoothed double precision NOT NULL,
    trade_value     decimal(15, 2) NOT NULL,
    action_type     varchar(20) NOT NULL,
    quantity        double precision NOT NULL,
    price           double precision NOT NULL,
    fee             double precision NOT NULL
);
CREATE INDEX idx_action_continuous ON rl_trades (action_raw, action_smoothed);
CREATE INDEX rl_trades_run_agent_time ON rl_trades (run_id, agent, event_time);

-- A clip is a fill that a gate made smaller: one row per fill and gate.
CREATE VIEW clips AS
SELECT f.event_id, f.run_id, f.agent, f.symbol, f.step, f.event_time, f.side,
       gate.reason, f.quantity, f.requested_quantity
FROM fills f, unnest(f.clipped_by) AS gate(reason);
