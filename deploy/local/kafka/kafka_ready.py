"""Readiness probe used by kafka.sh: exit 0 once the broker answers a Kafka API request.

Usage: python kafka_ready.py HOST:PORT [TIMEOUT_S]

Sends a Metadata request through aiokafka's admin client and requires the
broker to list at least one live broker (KRaft brokers only open their
listener once they are registered and unfenced). One attempt; kafka.sh loops.
"""

from __future__ import annotations

import asyncio
import logging
import sys


async def probe(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        await admin.start()
        info = await admin.describe_cluster()
        return bool(info.get("brokers"))
    finally:
        await admin.close()


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    bootstrap = sys.argv[1]
    timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    logging.disable(logging.CRITICAL)  # aiokafka logs every refused connection
    try:
        ok = asyncio.run(asyncio.wait_for(probe(bootstrap), timeout))
    except Exception as exc:  # noqa: BLE001 - any failure just means "not ready"
        print(f"not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
