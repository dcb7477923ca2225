"""Async service shells: Kafka I/O around the pure rules of ``core``."""
