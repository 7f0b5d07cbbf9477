"""Client-side check of subscribe filters, so mistakes fail at the call, not as a later
`error` frame that cannot be tied back to the call that caused it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from vocab.events import EVENT_TYPES

Scope = Literal["connection", "user"]
FILTER_KEYS = ("types", "task_ids", "list_ids")


def normalize_filters(filters: Mapping[str, Sequence[str | int] | None]) -> dict[str, Any]:
    """{types?, task_ids?, list_ids?}: None or a missing key means "any"; ids become strings."""
    unknown = set(filters) - set(FILTER_KEYS)
    if unknown:
        # A misspelt key would silently mean "any" and widen the subscription.
        raise ValueError(f"unknown filter key {sorted(unknown)[0]!r}")
    out: dict[str, Any] = {}
    for key in FILTER_KEYS:
        items = filters.get(key)
        if items is None:
            continue
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise TypeError(f"filters.{key} must be a list")
        if key == "types":
            bad = [t for t in items if t not in EVENT_TYPES]
            if bad:
                raise ValueError(f"filters.types: not event types: {bad!r}")
            out[key] = list(dict.fromkeys(str(t) for t in items))
        else:
            ids: list[str] = []
            for v in items:
                if isinstance(v, bool) or not isinstance(v, str | int):
                    raise TypeError(f"filters.{key} items must be strings or integers")
                ids.append(str(v))
            out[key] = list(dict.fromkeys(ids))
    return out


def check_scope(scope: str) -> Scope:
    if scope == "connection":
        return "connection"
    if scope == "user":
        return "user"
    raise ValueError("scope must be 'connection' or 'user'")
