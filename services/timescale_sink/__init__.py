"""The TimescaleDB sink: the log's events into the projection's tables (docs/queries.md)."""
