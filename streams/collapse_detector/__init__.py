"""The collapse detector: a faust stream processor over every agent's actions."""
