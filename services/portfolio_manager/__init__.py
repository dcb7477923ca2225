"""The portfolio manager service: risk gates, simulated execution, the ledger."""
