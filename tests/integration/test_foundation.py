"""Issue 2: a CloudEvent published through a daprd reaches a gateway, which drives a UserSession
actor hosted by the sessions app; the actor's state lives in Redis and survives a restart."""

import uuid

from devtools.topology import Topology
from tests.integration.harness import WsClient, actor, event, publish, redis_cli


async def test_published_event_reaches_actor_and_client_and_survives_restart(
    topo: Topology,
) -> None:
    user = f"found-{uuid.uuid4().hex[:8]}"
    client = await WsClient.connect(topo, "gw-a", user)
    assert client.welcome["type"] == "welcome"
    epoch = client.welcome["epoch"]

    await publish(
        topo,
        event("task_created", 123, audience=[user], description="Description", completed=False),
    )
    (ev,) = await client.events(1)
    assert ev["type"] == "task_created" and ev["seq"] == 1 and ev["data"]["id"] == 123
    await client.close()

    # State is in Redis under the actor key layout <appID>||<ActorType>||<ActorID>||<key>.
    keys = redis_cli(topo, "--scan", "--pattern", f"sessions||UserSession||{user}||*").split()
    assert f"sessions||UserSession||{user}||meta" in keys
    assert f"sessions||UserSession||{user}||c:0" in keys  # the chunk holding seq 1

    topo.stop_app("sessions")
    topo.start_app("sessions")
    topo.wait_app("sessions")

    state = await actor(topo, "UserSession", user, "inspect")
    assert state["meta"]["epoch"] == epoch
    assert state["meta"]["head"] == 1

    again = await WsClient.connect(topo, "gw-b", user, since=f"{epoch}:0")
    assert again.welcome["epoch"] == epoch and again.welcome["resumed"] is True
    (replayed,) = await again.events(1)
    assert replayed["seq"] == 1 and replayed["id"] == ev["id"]
    await again.close()
