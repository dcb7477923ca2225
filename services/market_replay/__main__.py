"""Run the market replay: ``python -m services.market_replay``."""

from services.market_replay.app import main
from services.runner import run_service

run_service("market-replay", main)
