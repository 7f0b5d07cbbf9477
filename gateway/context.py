"""Everything a request handler needs, built once per process in the app lifespan."""

from dataclasses import dataclass

from gateway.actor_client import DaprClient
from gateway.auth import AuthConfig
from gateway.client_frames import FrameHandler
from gateway.config import Settings
from gateway.fanout import Fanout
from gateway.hub import AttachRefused, Hub
from gateway.peers import Peers
from gateway.sessions import Sessions, SessionsPort


@dataclass
class Context:
    settings: Settings
    auth: AuthConfig
    dapr: DaprClient
    sessions: SessionsPort
    hub: Hub
    fanout: Fanout
    frames: FrameHandler
    attach_refused: type[AttachRefused] = AttachRefused

    @staticmethod
    def build(
        settings: Settings, auth: AuthConfig, sessions: SessionsPort | None = None
    ) -> "Context":
        """`sessions` replaces the actors through daprd (in-process tests pass the in-memory
        backend)."""
        dapr = DaprClient(settings.dapr_url, settings.dapr_api_token)
        if sessions is None:
            sessions = Sessions(dapr, settings.replica_id)
        hub = Hub(settings, sessions)
        return Context(
            settings=settings,
            auth=auth,
            dapr=dapr,
            sessions=sessions,
            hub=hub,
            fanout=Fanout(settings, sessions, hub, Peers(settings.app_api_token)),
            frames=FrameHandler(sessions, auth, hub.set_user_filter),
        )
