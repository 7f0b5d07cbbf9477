"""Serializers for the actor runtime.

The SDK's default JSON serializer turns date- or duration-looking strings ("2024-01-02-abc", "5m")
into datetime/timedelta objects. Event data and device ids are user text, so:
- method payloads travel as raw msgpack bytes (BytesPassthroughSerializer), and
- state never goes through the SDK's serializers (actors/state_client.py writes plain JSON).
"""

from collections.abc import Callable
from typing import Any

from dapr.serializers import DefaultJSONSerializer


def _wants_bytes(data_type: Any) -> bool:
    # Annotations may be strings when a module uses postponed evaluation.
    return data_type is bytes or data_type == "bytes"


class BytesPassthroughSerializer(DefaultJSONSerializer):
    """Bytes pass through untouched; everything else (timers, config) stays JSON."""

    def serialize(self, obj: object, custom_hook: Callable[[object], bytes] | None = None) -> bytes:
        if isinstance(obj, bytes):
            return obj
        return super().serialize(obj, custom_hook)

    def deserialize(
        self,
        data: bytes,
        data_type: Any = object,
        custom_hook: Callable[[bytes], object] | None = None,
    ) -> Any:
        if _wants_bytes(data_type):
            return bytes(data) if not isinstance(data, str) else data.encode()
        return super().deserialize(data, data_type, custom_hook)
