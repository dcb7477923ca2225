"""The TimescaleDB projection of the log: settings, migrations, rows, writes, queries, rebuild.

Kafka holds the truth; these tables are a projection of it that can be
dropped and rebuilt at any time (docs/queries.md). ``services.timescale_sink``
is the service that keeps them up to date.
"""
