"""Run the demo task API: python -m demo (port from APP_PORT)."""

import os

import uvicorn

from demo.api import create_app
from vocab import logsetup

if __name__ == "__main__":
    logsetup.configure("producer")
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=int(os.environ.get("APP_PORT", "8010")),
        log_level=os.environ.get("LOG_LEVEL", "info").lower(),
        log_config=None,
    )
