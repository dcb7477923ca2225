"""Run the TimescaleDB sink: ``python -m services.timescale_sink``."""

from services.runner import run_service
from services.timescale_sink.app import main

run_service("timescale-sink", main)
