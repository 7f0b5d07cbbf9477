"""tasksync-admin: the operator CLI for the gateway's /admin/ API (gateway/admin.py), and a test
publish through a producer's daprd.

URL and token come from --url/--token, else TASKSYNC_ADMIN_URL/TASKSYNC_ADMIN_TOKEN, else the
run command's .run/admin.env. A publish goes to PUBLISH_URL with DAPR_API_TOKEN, from the
environment or .run/producer.env (both written by ./scripts/run.sh, mode 0600).

    tasksync-admin replicas
    tasksync-admin connections alice
    tasksync-admin session alice
    tasksync-admin disconnect alice --code server_shutdown [--conn gw-a.0123abcd]
    tasksync-admin drain gw-b
    tasksync-admin publish --audience alice --task 7 --type task_updated --data '{"title": "x"}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import httpx

from vocab.json_types import JsonObject

RUN_DIR = Path(".run")


def read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def setting(name: str, given: str | None, env_file: Path) -> str | None:
    return given or os.environ.get(name) or read_env_file(env_file).get(name)


def admin_request(args: argparse.Namespace) -> tuple[str, str, JsonObject | None]:
    """(method, path, JSON body) of the admin call a command makes."""
    user = quote(getattr(args, "user", "") or "", safe="")
    if args.command == "replicas":
        return "GET", "/admin/replicas", None
    if args.command == "connections":
        return "GET", f"/admin/users/{user}/connections", None
    if args.command == "session":
        return "GET", f"/admin/users/{user}/session", None
    if args.command == "disconnect":
        code: int | str = int(args.code) if args.code.isdigit() else args.code
        return "POST", f"/admin/users/{user}/disconnect", {"code": code, "conn": args.conn}
    if args.command == "drain":
        return "POST", f"/admin/replicas/{quote(args.replica, safe='')}/drain", None
    raise ValueError(args.command)


def event_body(args: argparse.Namespace) -> JsonObject:
    """The topic payload (gateway/topic_schema.py) of a test publish."""
    data: object = json.loads(args.data) if args.data else {}
    if not isinstance(data, dict):
        raise SystemExit("--data must be a JSON object")
    data.setdefault("id", int(args.task) if args.task.isdigit() else args.task)
    body: JsonObject = {"event_id": args.event_id or uuid.uuid4().hex, "type": args.type,
                            "data": data, "ts": time.time()}
    if args.audience:
        body["audience"] = [u.strip() for u in args.audience.split(",") if u.strip()]
    if args.version is not None:
        body["version"] = args.version
    return body


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tasksync-admin", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a gateway's base URL (TASKSYNC_ADMIN_URL)")
    ap.add_argument("--token", help="the admin token (TASKSYNC_ADMIN_TOKEN)")
    ap.add_argument("--run-dir", type=Path, default=RUN_DIR, help="where admin.env and "
                    "producer.env are (default .run)")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("replicas", help="status of every live gateway replica")
    for name, text in (("connections", "a user's connections on every replica"),
                       ("session", "a user's session: epoch, head, tail, cursors, positions")):
        sub.add_parser(name, help=text).add_argument("user")
    d = sub.add_parser("disconnect", help="close a user's connections (or one) with a code")
    d.add_argument("user")
    d.add_argument("--code", required=True, help="close code or name from the catalogue, e.g. "
                   "4011 or server_shutdown")
    d.add_argument("--conn", help="only this connection id")
    sub.add_parser("drain", help="drain a replica (close all with 4011, leave the registry)"
                   ).add_argument("replica")
    p = sub.add_parser("publish", help="publish a test event through a producer daprd")
    p.add_argument("--type", default="task_updated")
    p.add_argument("--task", required=True, help="data.id")
    p.add_argument("--audience", help="comma-separated user ids (else data's owner fields)")
    p.add_argument("--data", help="JSON object merged into data")
    p.add_argument("--event-id")
    p.add_argument("--version", type=int)
    p.add_argument("--publish-url", help="PUBLISH_URL (else producer.env)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "publish":
        env_file = args.run_dir / "producer.env"
        url = setting("PUBLISH_URL", args.publish_url, env_file)
        dapr_token = setting("DAPR_API_TOKEN", None, env_file)
        if not url:
            raise SystemExit(f"no PUBLISH_URL (--publish-url, environment or {env_file})")
        event = event_body(args)
        headers = {"dapr-api-token": dapr_token} if dapr_token else {}
        r = httpx.post(url, json=event, headers=headers, timeout=10)
        print(json.dumps({"status": r.status_code, "event_id": event["event_id"]}))
        return 0 if r.status_code in (200, 204) else 1
    env_file = args.run_dir / "admin.env"
    base = setting("TASKSYNC_ADMIN_URL", args.url, env_file) or "http://127.0.0.1:8001"
    token = setting("TASKSYNC_ADMIN_TOKEN", args.token, env_file)
    if not token:
        raise SystemExit(f"no admin token (--token, TASKSYNC_ADMIN_TOKEN or {env_file})")
    method, path, body = admin_request(args)
    r = httpx.request(method, base.rstrip("/") + path, json=body, timeout=30,
                      headers={"authorization": f"Bearer {token}"})
    try:
        print(json.dumps(r.json(), indent=2, sort_keys=True))
    except ValueError:
        print(r.text)
    if r.status_code != 200:
        print(f"HTTP {r.status_code}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
