"""Run one gateway replica: python -m gateway.

uvicorn closes open WebSockets itself on shutdown (code 1012) before the app lifespan ends, so the
server is wrapped: on SIGTERM we first close every connection with our own code 4011 ("reconnect
elsewhere and resume"), detach them from their actors, then let uvicorn finish.
"""

import os

import uvicorn

from gateway import protocol
from gateway.app import configure_logging, create_app
from gateway.config import Settings


class DrainingServer(uvicorn.Server):
    async def shutdown(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        ctx = self.config.loaded_app_ctx  # type: ignore[attr-defined]
        await ctx.hub.drain(protocol.SERVER_SHUTDOWN)
        await super().shutdown(sockets)


def main() -> None:
    configure_logging()
    settings = Settings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=os.environ.get("TASKSYNC_BIND", "127.0.0.1"),
        port=int(os.environ.get("APP_PORT", "8001")),
        # The sans-I/O implementation waits while the socket's write buffer is over its
        # high-water mark; the legacy one buffered a non-reading client's frames without limit
        # (measured: 9 MB for one client), so slow consumers were never detected.
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        # Liveness is the app-level heartbeat (close 4012), so every close a client sees comes
        # from our catalogue; uvicorn's own ping would close with a bare 1011 instead.
        ws_ping_interval=None,
        timeout_graceful_shutdown=10,
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        proxy_headers=False,
    )
    config.loaded_app_ctx = app.state.ctx  # type: ignore[attr-defined]
    DrainingServer(config).run()


if __name__ == "__main__":
    main()
