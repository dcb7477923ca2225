"""Container health check of a tradingbot service: exit 0 once its /metrics answers.

Usage: ``python deploy/healthcheck.py [PORT]``; without PORT, the port is the
service's own ``TRADINGBOT_*_METRICS_PORT`` (the only one set in its container).
Standard library only: it runs in the service image as it is.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        port = argv[1]
    else:
        ports = [v for k, v in os.environ.items() if k.endswith("_METRICS_PORT") and v != "0"]
        if len(ports) != 1:
            print(f"healthcheck: give the port: {len(ports)} *_METRICS_PORT set", file=sys.stderr)
            return 2
        port = ports[0]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{int(port)}/metrics", timeout=3) as reply:
            return 0 if reply.status == 200 else 1
    except (OSError, ValueError) as e:
        print(f"healthcheck: /metrics on port {port}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
