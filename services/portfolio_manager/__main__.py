"""Run the portfolio manager: ``python -m services.portfolio_manager``."""

from services.portfolio_manager.app import main
from services.runner import run_service

run_service("portfolio-manager", main)
