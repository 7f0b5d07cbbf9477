"""Python async client of the task sync service (docs/protocol.md): WebSocket with SSE fallback,
resume by position, coalesced acks, reconnects per the close-code catalogue."""

from clients.pyclient.client import TaskSyncClient
from clients.pyclient.dispatch import State, SubscribeRefused
from clients.pyclient.handlers import EventStream
from clients.pyclient.position import Position

__all__ = ["EventStream", "Position", "State", "SubscribeRefused", "TaskSyncClient"]
