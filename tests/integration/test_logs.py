"""The apps' log files in the integration run: JSON lines (the default format) that parse, carry
the replica and, for a connection's lines, its user and connection id; no token anywhere."""

import json
import uuid

from devtools.topology import Topology
from tests.integration.harness import WsClient, poll_until, token


def app_log(topo: Topology, name: str) -> str:
    proc = topo.apps[name].app
    assert proc is not None
    return proc.log_path.read_text(errors="replace")


def app_lines(topo: Topology, name: str) -> list[dict]:
    return [json.loads(x) for x in app_log(topo, name).splitlines() if x.startswith("{")]


async def test_gateway_lines_are_json_with_connection_fields_and_no_token(
        topo: Topology) -> None:
    user = f"logs-{uuid.uuid4().hex[:8]}"
    tok = token(user)
    c = await WsClient.connect(topo, "gw-b", user, tok=tok)
    conn_id = c.welcome["conn_id"]
    await c.close()

    def closing() -> list[dict]:
        return [x for x in app_lines(topo, "gateway-gw-b")
                if x.get("conn") == conn_id and x["message"].startswith("closing")]

    await poll_until(lambda: bool(closing()), 10, "the connection's closing line")
    raw = app_log(topo, "gateway-gw-b")
    # Every line is one JSON object (uvicorn's own lines included).
    assert all(x.startswith("{") for x in raw.splitlines() if x.strip()), raw[-2000:]
    assert tok not in raw
    (line,) = closing()
    assert line["user"] == user and line["replica"] == "gw-b" and line["app"] == "gateway"
    for name, app in (("sessions-s1", "sessions"), ("producer", "producer")):
        assert all(x["app"] == app for x in app_lines(topo, name)), name
