"""The market-replay service: historical bars into Kafka, step by step."""
