"""msgpack framing of actor method payloads (shared by the actor shells and the gateway)."""

import msgpack

from vocab.json_types import WireMap


def pack(obj: WireMap) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> WireMap:
    obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
    if not isinstance(obj, dict):
        raise ValueError("actor payload must be a msgpack map")
    return obj
