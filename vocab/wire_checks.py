"""Shape checks for decoding wire and stored values: fail loudly on a bad shape, never run on a
half-parsed value. Shared by every decoder of the project (server and client)."""

from __future__ import annotations

from collections.abc import Mapping

from vocab.ids import EPOCH_RE
from vocab.json_types import JsonObject, WireMap

# --- wire helpers: stored JSON may be old, hand-edited or corrupt, so fail loudly on bad shapes ---


def _get(d: WireMap, key: str) -> object:
    if key not in d:
        raise ValueError(f"missing field {key!r}")
    return d[key]


def _int(v: object, what: str) -> int:
    # bool is an int subclass; a stored True must not become seq 1.
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{what}: expected int, got {type(v).__name__}")
    return v


def _float(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{what}: expected number, got {type(v).__name__}")
    return float(v)


def _bool(v: object, what: str) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{what}: expected bool, got {type(v).__name__}")
    return v


def _str(v: object, what: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{what}: expected str, got {type(v).__name__}")
    return v


def _opt_str(v: object, what: str) -> str | None:
    return None if v is None else _str(v, what)


def _list(v: object, what: str) -> list[object]:
    # msgpack may hand back tuples (use_list=False); accept both.
    if not isinstance(v, list | tuple):
        raise ValueError(f"{what}: expected list, got {type(v).__name__}")
    return list(v)


def _map(v: object, what: str) -> JsonObject:
    if not isinstance(v, Mapping) or not all(isinstance(k, str) for k in v):
        raise ValueError(f"{what}: expected object with string keys")
    return dict(v)


def _str_set(v: object, what: str) -> frozenset[str] | None:
    if v is None:
        return None
    # The client protocol lets ids be numbers; store them as the strings events carry.
    return frozenset(
        str(x) if isinstance(x, int) and not isinstance(x, bool) else _str(x, what)
        for x in _list(v, what)
    )


def _sorted_or_none(s: frozenset[str] | None) -> list[str] | None:
    # Sorted so the stored JSON is stable (equal filters -> equal bytes).
    return None if s is None else sorted(s)


def _check_epoch(epoch: object) -> str:
    if not isinstance(epoch, str) or EPOCH_RE.fullmatch(epoch) is None:
        raise ValueError(f"bad epoch {epoch!r}: want 1..64 chars of [A-Za-z0-9_-]")
    return epoch


