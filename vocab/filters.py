"""The one filter type: which events a user (persisted) or a connection (narrowed) receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from vocab.json_types import WireMap
from vocab.wire_checks import _sorted_or_none, _str_set


class FiltersWire(TypedDict):
    types: list[str] | None
    task_ids: list[str] | None
    list_ids: list[str] | None


@dataclass(frozen=True)
class Filters:
    """Persisted per-user filter. ``None`` in a dimension means no restriction there; an empty
    set is a real restriction that matches nothing."""

    types: frozenset[str] | None = None
    task_ids: frozenset[str] | None = None
    list_ids: frozenset[str] | None = None

    def matches(self, event_type: str, task_id: str | None, list_id: str | None) -> bool:
        if self.types is not None and event_type not in self.types:
            return False
        # An event without a task/list cannot satisfy a filter that asks for specific ones.
        if self.task_ids is not None and (task_id is None or task_id not in self.task_ids):
            return False
        return self.list_ids is None or (list_id is not None and list_id in self.list_ids)

    def is_empty(self) -> bool:
        return self.types is None and self.task_ids is None and self.list_ids is None

    def to_wire(self) -> FiltersWire:
        return {
            "types": _sorted_or_none(self.types),
            "task_ids": _sorted_or_none(self.task_ids),
            "list_ids": _sorted_or_none(self.list_ids),
        }

    @classmethod
    def from_wire(cls, d: WireMap) -> Filters:
        # Missing keys mean "any", matching the client protocol where every list is optional.
        return cls(
            types=_str_set(d.get("types"), "filters.types"),
            task_ids=_str_set(d.get("task_ids"), "filters.task_ids"),
            list_ids=_str_set(d.get("list_ids"), "filters.list_ids"),
        )
