"""Real-browser end-to-end tests of the live board (gateway/static) against the real topology.

Each test runs one scenario of browser_driver.mjs (playwright-core + Debian's chromium) in a
subprocess bounded by a timeout, and asserts on the JSON it prints. Screenshots and measured
numbers go to test-artifacts/.
"""

import contextlib
import json
import math
import os
import selectors
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from devtools.topology import Topology
from tests.e2e.conftest import E2E, gateway_urls
from tests.integration.harness import token

ROOT = E2E.parent.parent
ARTIFACTS = ROOT / "test-artifacts"
DRIVER = E2E / "browser_driver.mjs"

pytestmark = pytest.mark.integration

Need = Callable[[dict[str, Any]], dict[str, Any]]


def driver_args(topo: Topology, *names: str, **extra: Any) -> dict[str, Any]:
    """Everything a scenario needs: URLs, the producer's daprd, fresh users and their tokens."""
    suffix = uuid.uuid4().hex[:8]
    users = {n: f"{n}-{suffix}" for n in names}
    producer = topo.apps["producer"]
    return {
        "gateways": gateway_urls(topo),
        "api": f"http://127.0.0.1:{producer.app_port}",
        "dapr": f"http://127.0.0.1:{producer.http_port}",
        "daprToken": topo.api_token,
        "users": users,
        "tokens": {n: token(u) for n, u in users.items()},
        "artifacts": str(ARTIFACTS),
        **extra,
    }


def run_driver(
    scenario: str, args: dict[str, Any], on_need: Need | None = None, timeout: float = 90
) -> dict[str, Any]:
    """Run one scenario; answer its {"need": ...} lines; return its result (fail on error)."""
    args = {"timeoutMs": int((timeout - 15) * 1000), **args}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            ["node", str(DRIVER), scenario, json.dumps(args)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,  # its own process group: node and chromium die together
        )
        assert proc.stdin is not None and proc.stdout is not None
        final: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"driver {scenario} still running after {timeout} s")
                if not sel.select(left):
                    continue
                line = proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "need" in msg:
                    if on_need is None:
                        raise AssertionError(f"driver asked for {msg} and nobody answers")
                    proc.stdin.write(json.dumps(on_need(msg)) + "\n")
                    proc.stdin.flush()
                elif "result" in msg or "error" in msg:
                    final = msg
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            err.seek(0)
            print(f"--- driver stderr ---\n{err.read()[-4000:]}")
            raise
        finally:
            sel.close()
        err.seek(0)
        stderr = err.read()
    if final is None or "error" in final:
        detail = json.dumps(final, indent=1)[:6000] if final else "(no result line)"
        pytest.fail(
            f"driver {scenario} failed (exit {proc.returncode}):\n{detail}\n{stderr[-3000:]}"
        )
    result: dict[str, Any] = final["result"]
    return result


def contiguous(seqs: list[int]) -> bool:
    return bool(seqs) and seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def save(name: str, data: dict[str, Any]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / name).write_text(json.dumps(data, indent=2) + "\n")


def test_live_updates_over_websocket_on_two_gateways(topo: Topology) -> None:
    args = driver_args(topo, "alice", "bob")
    r = run_driver("live_ws", args, timeout=75)
    a_url, b_url = gateway_urls(topo)
    assert [s["name"] for s in r["steps"]] == ["create", "edit", "complete", "delete"]
    for s in r["steps"]:
        assert s["ms"]["alice"] is not None, f"alice's board missed {s['name']}: {r}"
        assert s["ms"]["bob"] is not None, f"bob's board missed {s['name']}: {r}"
    alice, bob = r["pages"]["alice"], r["pages"]["bob"]
    assert alice["url"] == a_url and bob["url"] == b_url, "each page stays on its own gateway"
    for name, page in (("alice", alice), ("bob", bob)):
        assert page["types_for_task"] == [
            "task_created",
            "task_updated",
            "task_completed",
            "task_deleted",
        ], (name, page)
        assert page["titles_for_task"][1].endswith("(2 litres)"), page["titles_for_task"]
        assert not page["task_on_board"], f"{name}: deleted task still on the board"
        assert page["badge"].startswith("WebSocket"), page["badge"]
        assert page["transport"] == "websocket" and page["transports_seen"] == ["websocket"]
        assert page["state"] == "open"
        assert page["seqs"] == [1, 2, 3, 4] and page["duplicates"] == 0, page["seqs"]
        assert page["errors"] == [] and page["resyncs"] == [], page


def test_websocket_blocked_falls_back_to_sse_without_gap_or_duplicate(topo: Topology) -> None:
    n = 20
    r = run_driver("sse_fallback", driver_args(topo, "carol", events=n), timeout=60)
    assert r["blocked_ws_attempts"] >= 2, r
    assert r["transport"] == "sse" and r["transports_seen"] == ["sse"], r
    assert r["badge"].startswith("SSE"), r["badge"]
    assert r["ws_frames_seen"] == 0, "no frame may have come over a WebSocket"
    assert r["complete"], f"only {len(r['seqs'])} of {n} events arrived: {r}"
    assert r["seqs"] == list(range(1, n + 1)), r["seqs"]
    assert sorted(r["task_ids"]) == list(range(1, n + 1)), r["task_ids"]
    assert r["duplicates"] == 0
    assert r["errors"] == [], f"SSE acks or stream errors: {r['errors']}"


def test_gateway_killed_client_resumes_on_the_other_gateway(topo: Topology) -> None:
    n, kill_after, in_flight = 40, 10, 5
    a_url, b_url = gateway_urls(topo)
    killed: list[float] = []

    def on_need(msg: dict[str, Any]) -> dict[str, Any]:
        assert msg["need"] == "kill" and msg["gateway"] == a_url
        topo.kill_app("gateway-gw-a")  # SIGKILL app and daprd: no drain, no close frame
        killed.append(time.time() * 1000)
        return {"killed_at_ms": killed[0]}

    try:
        r = run_driver(
            "failover",
            driver_args(
                topo, "dave", events=n, killAfter=kill_after, rateMs=100, inFlight=in_flight
            ),
            on_need,
            timeout=110,
        )
    finally:
        topo.start_app("gateway-gw-a")
        topo.wait_app("gateway-gw-a")
    assert killed, "the driver never asked for the kill"
    numbers = {
        "kill_to_open_on_b_ms": r["kill_to_open_ms"],
        "kill_to_first_event_on_b_ms": r["kill_to_first_event_ms"],
        "events_published_during_outage": r["published_after_kill_before_resume"],
        "max_publish_to_page_ms": r["max_delivery_ms"],
        # Events the killed daprd had taken from the stream: redelivered after processingTimeout.
        "late_events": r["late"],
        "states": [(s["state"], s["transport"], s["url"], s.get("code")) for s in r["states"]],
    }
    save("e2e-failover.json", numbers)
    print(f"\nfailover: {json.dumps(numbers)}")
    assert r["first_url"] == a_url
    total = n + in_flight
    assert r["complete"], f"only {len(r['seqs'])} of {total} events: {r}"
    assert r["seqs"] == list(range(1, total + 1)), f"gap or duplicate: {r['seqs']}"
    expected = [*range(1, n + 1), *range(1001, 1001 + in_flight)]
    assert sorted(r["task_ids"]) == expected, f"lost or doubled: {r['task_ids']}"
    assert r["duplicates"] == 0
    assert r["url"] == b_url and r["state"] == "open", r
    assert r["first_event_after_kill"]["url"] == b_url
    assert r["urls_seen"][:kill_after] == [a_url] * kill_after
    assert r["kill_to_open_ms"] is not None and r["kill_to_first_event_ms"] is not None
    assert r["resyncs"] == [], "a resume on another replica must not need a resync"


def test_reload_resumes_from_the_stored_position(topo: Topology) -> None:
    r = run_driver("reload", driver_args(topo, "erin"), timeout=60)
    before, after = r["before"], r["after"]
    assert before["seqs"] == [1, 2, 3]
    assert after["restored"] == before["position"], "position read back from sessionStorage"
    assert after["device"] == before["device"], "same device id after the reload"
    assert r["complete"], r
    assert r["published_during_reload"] == 1, "a change was made while no page was connected"
    # Only what came after the stored position: nothing replayed twice, nothing missed.
    assert [e["seq"] for e in after["events"]] == [4, 5, 6], after["events"]
    # The last two changes are published back to back: recorded in either order.
    assert sorted(e["type"] for e in after["events"]) == [
        "task_completed",
        "task_created",
        "task_created",
    ]
    assert after["duplicates"] == 0 and after["resyncs"] == []
    welcome = r["welcomes_after_reload"][0]
    assert welcome["type"] == "welcome" and welcome["resumed"] is True, r["welcomes_after_reload"]
    assert welcome["seq"] == 3 and welcome["epoch"] == before["position"]["epoch"]
    tasks = r["tasks_after"]
    assert sorted(int(k) for k in tasks) == sorted(r["created"]), "board lists every task"
    assert tasks[str(r["created"][0])]["completed"] is True


def test_latency_sse_vs_websocket(topo: Topology) -> None:
    n, rate_ms = 50, 100
    r = run_driver("latency", driver_args(topo, "frank", "grace", events=n, rateMs=rate_ms))
    report: dict[str, Any] = {"events": n, "publish_interval_ms": rate_ms, "gateway": "gw-a"}
    for name, page in r["pages"].items():
        assert r["complete"][name], f"{name}: {len(page['seqs'])} of {n} events"
        assert page["seqs"] == list(range(1, n + 1)) and page["duplicates"] == 0, page["seqs"]
        assert page["transport"] == name
        lat = page["latencies_ms"]
        report[name] = {
            "p50_ms": round(percentile(lat, 50), 1),
            "p99_ms": round(percentile(lat, 99), 1),
            "max_ms": round(max(lat), 1),
            "min_ms": round(min(lat), 1),
        }
    assert r["pages"]["websocket"]["badge"].startswith("WebSocket")
    assert r["pages"]["sse"]["badge"].startswith("SSE")
    ws, sse = report["websocket"], report["sse"]
    report["ratio_sse_over_ws"] = {
        "p50": round(sse["p50_ms"] / ws["p50_ms"], 2) if ws["p50_ms"] > 0 else None,
        "p99": round(sse["p99_ms"] / ws["p99_ms"], 2) if ws["p99_ms"] > 0 else None,
    }
    save("e2e-latency.json", report)
    print(f"\nlatency: {json.dumps(report)}")


def test_board_ignores_older_task_versions_delivered_late(topo: Topology) -> None:
    r = run_driver("stale_order", driver_args(topo, "heidi"), timeout=45)
    assert r["seqs"] == [1, 2, 3, 4, 5]
    assert r["title_after_updates"] == "v3 newest" and r["stale_after_updates"] == 1, r
    assert r["task_after_delete"] is None, "a late create must not bring a deleted task back"
    assert r["stale"] == 2
