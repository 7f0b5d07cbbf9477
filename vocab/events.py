"""Event types and wire names both ends agree on."""

EVENT_TYPES: frozenset[str] = frozenset(
    {"task_created", "task_updated", "task_deleted", "task_completed"}
)
SUBPROTOCOL_JSON = "tasksync.json.v1"
SUBPROTOCOL_MSGPACK = "tasksync.msgpack.v1"
