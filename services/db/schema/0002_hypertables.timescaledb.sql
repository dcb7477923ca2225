-- 0002 (TimescaleDB, Apache or community edition): hypertables on event time.
--
-- Chunks of 30 days of event time. Replays of the same history share chunks
-- (their event times are the bars' dates), so chunks fill with many runs.
SELECT create_hypertable('bars', 'event_time', chunk_time_interval => INTERVAL '30 days');
SELECT create_hypertable('actions', 'event_time', chunk_time_interval => INTERVAL '30 days');
SELECT create_hypertable('decisions', 'event_time', chunk_time_interval => INTERVAL '30 days');
SELECT create_hypertable('fills', 'event_time', chunk_time_interval => INTERVAL '30 days');
SELECT create_hypertable('marks', 'event_time', chunk_time_interval => INTERVAL '30 days');
SELECT create_hypertable('holdings', 'event_time', chunk_time_interval => INTERVAL '30 days');
