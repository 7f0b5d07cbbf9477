"""msgpack framing of actor method payloads (shared by the actor shells and the gateway)."""

from typing import Any

import msgpack


def pack(obj: dict[str, Any]) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> dict[str, Any]:
    obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    if not isinstance(obj, dict):
        raise ValueError("actor payload must be a msgpack map")
    return obj
