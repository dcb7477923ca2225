"""Grafana dashboards of the stack, generated as code (see grafana/README.md)."""
