"""Run a symbol agent: ``python -m services.symbol_agent``."""

from services.runner import run_service
from services.symbol_agent.app import main

run_service("symbol-agent", main)
