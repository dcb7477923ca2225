"""Pure domain of tradingbot: bars, actions, execution, the ledger and performance.

Everything here is a plain function or a frozen value: numpy (and numba for
the compiled kernels) only, no I/O, no clock, no randomness without a seed.
The gymnasium environments and the services call the same functions, so an
agent is served under exactly the rules it was trained under.
"""

import hashlib
import os
import tempfile
from pathlib import Path

import numba


def _key_numba_cache_by_source() -> None:
    """Point numba's on-disk cache at a folder named by a hash of core's sources.

    Numba re-validates a cached kernel against its own file only, not against
    the kernels it calls; keying the whole cache by the source of ``core``
    means an edited rule can never run stale compiled code. A user's
    ``NUMBA_CACHE_DIR`` is respected.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    folder = Path(tempfile.gettempdir()) / "tradingbot-numba" / digest.hexdigest()[:16]
    numba.config.CACHE_DIR = str(folder)  # type: ignore[attr-defined]


_key_numba_cache_by_source()
