"""Run the sessions host: python -m actors (port from APP_PORT, loopback only)."""

import os

import uvicorn

if __name__ == "__main__":
    uvicorn.run(
        "actors.host:app",
        host=os.environ.get("TASKSYNC_BIND", "127.0.0.1"),
        port=int(os.environ.get("APP_PORT", "7100")),
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        log_config=None,  # lines go through vocab/logsetup.py (configured by actors.host)
        timeout_graceful_shutdown=10,
    )
