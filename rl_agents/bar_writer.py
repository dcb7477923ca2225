"""Write a ``BarFrame`` as a file the loaders read back: the shared layout or Parquet.

``.csv`` and ``.csv.gz`` are the shared layout (``timestamp,symbol,open,high,
low,close,volume``, the time as ISO 8601 in New York time with its offset),
one row per present bar, in time order and by symbol within a time;
``.parquet`` has the same columns with the time as a zoned timestamp. A
symbol absent at a time has no row, so ``load_bars`` gives the same frame
back. The bytes depend only on the frame (no time stamps in the gzip
header), so a seeded generator writes identical files.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from core.bars import SHARED_HEADER, BarDataError, BarFrame, timestamp_ns_to_iso

SUFFIXES = (".csv", ".csv.gz", ".parquet")


def write_bars(frame: BarFrame, path: Path) -> Path:
    """Write ``frame`` to ``path`` (``.csv``, ``.csv.gz`` or ``.parquet``); return the path.

    The file is written beside the target and renamed into place, so a
    failed write leaves no half file.
    """
    name = path.name.lower()
    if not name.endswith(SUFFIXES):
        raise BarDataError(str(path), None, f"cannot write bars there: use {', '.join(SUFFIXES)}")
    table = _table(frame, parquet=name.endswith(".parquet"))
    partial = path.with_name(f".{path.name}.partial")
    try:
        if name.endswith(".parquet"):
            pq.write_table(table, partial)
        else:
            options = pa_csv.WriteOptions(include_header=False, quoting_style="none")
            buffer = pa.BufferOutputStream()
            pa_csv.write_csv(table, buffer, options)
            text = (",".join(SHARED_HEADER) + "\n").encode() + buffer.getvalue().to_pybytes()
            if name.endswith(".gz"):
                text = gzip.compress(text, compresslevel=6, mtime=0)
            partial.write_bytes(text)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _table(frame: BarFrame, *, parquet: bool) -> pa.Table:
    """One row per present bar: by time, then by symbol."""
    t, j = np.nonzero(frame.present)
    if parquet:
        times = pa.array(frame.timestamps[t] // 1000, pa.timestamp("us", tz="America/New_York"))
    else:
        iso = np.array([timestamp_ns_to_iso(int(ts)) for ts in frame.timestamps], dtype=object)
        times = pa.array(iso[t], pa.string())
    symbols = np.array(frame.symbols, dtype=object)
    volume = frame.volume[t, j]
    whole = bool(np.all(volume == np.round(volume)))
    columns = [
        times,
        pa.array(symbols[j], pa.string()),
        *(
            pa.array(getattr(frame, c)[t, j], pa.float64())
            for c in ("open", "high", "low", "close")
        ),
        pa.array(volume.astype(np.int64), pa.int64()) if whole else pa.array(volume, pa.float64()),
    ]
    return pa.Table.from_arrays(columns, names=list(SHARED_HEADER))
