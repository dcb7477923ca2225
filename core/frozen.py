"""A fast ``dataclasses.replace`` for the frozen, slotted state records of ``core``.

``dataclasses.replace`` goes through ``__init__`` and costs about 10 µs for a
record of a dozen fields; the aggregates evolve a state for every event, so
this copies the slots directly with a function made once per class (the
records have no ``__post_init__``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")


@cache
def _copier(cls: type) -> Callable[[Any, dict[str, Any]], Any]:
    if "__post_init__" in vars(cls):
        raise TypeError(f"{cls.__name__} has a __post_init__: use dataclasses.replace")
    names = [f.name for f in dataclasses.fields(cls)]
    lines = ["def copy(record, changes):", "    new = new_(cls)", "    get = changes.get"]
    lines += [f"    set_(new, {n!r}, get({n!r}, record.{n}))" for n in names]
    lines.append("    return new")
    scope: dict[str, Any] = {"new_": object.__new__, "set_": object.__setattr__, "cls": cls}
    exec("\n".join(lines), scope)  # noqa: S102 - code made from the class's own field names
    copy: Callable[[Any, dict[str, Any]], Any] = scope["copy"]
    return copy


def replace(record: T, /, **changes: Any) -> T:
    """A copy of the frozen dataclass ``record`` with ``changes`` (names are not checked)."""
    copied: T = _copier(type(record))(record, changes)  # type: ignore[arg-type]
    return copied
