"""Actor interfaces: the SDK dispatches only methods declared on an ActorInterface.

Every method takes and returns one msgpack-encoded map (see actors/wire.py); the annotation must be
the real `bytes` type so the passthrough serializer hands the body over untouched.
"""

from abc import abstractmethod

from dapr.actor import ActorInterface, actormethod


class UserSessionInterface(ActorInterface):
    @abstractmethod
    @actormethod(name="deliver")
    async def deliver(self, payload: bytes) -> bytes: ...

    @abstractmethod
    @actormethod(name="attach")
    async def attach(self, payload: bytes) -> bytes: ...

    @abstractmethod
    @actormethod(name="read")
    async def read(self, payload: bytes) -> bytes: ...

    @abstractmethod
    @actormethod(name="detach")
    async def detach(self, payload: bytes) -> bytes: ...

    @abstractmethod
    @actormethod(name="ack")
    async def ack(self, payload: bytes) -> bytes: ...

    @abstractmethod
    @actormethod(name="set_filters")
    async def set_filters(self, payload: bytes) -> bytes: ...

    @abstractmethod
    @actormethod(name="inspect")
    async def inspect(self, payload: bytes) -> bytes: ...


class ReplicaRegistryInterface(ActorInterface):
    @abstractmethod
    @actormethod(name="heartbeat")
    async def heartbeat(self, payload: bytes) -> bytes: ...

    @abstractmethod
    @actormethod(name="leave")
    async def leave(self, payload: bytes) -> bytes: ...

    @abstractmethod
    @actormethod(name="snapshot")
    async def snapshot(self, payload: bytes) -> bytes: ...
