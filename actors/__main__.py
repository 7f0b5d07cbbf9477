"""Run the sessions host: python -m actors (port from APP_PORT, loopback only)."""

import uvicorn

from actors.settings import load_or_exit

if __name__ == "__main__":
    settings = load_or_exit()
    uvicorn.run(
        "actors.host:app",
        host=settings.bind,
        port=settings.app_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # lines go through vocab/logsetup.py (configured by actors.host)
        timeout_graceful_shutdown=10,
    )
