"""Offline check of the Helm chart deploy/helm/tasksync (run by scripts/check-chart.sh).

For every values scenario: `helm lint --strict`, then `helm template` for the oldest and newest
Kubernetes version in range, and every rendered object is checked:
- Kubernetes kinds against kubernetes-validate's bundled schemas, strict (unknown fields fail);
- Dapr kinds (Component, Subscription, Resiliency, Configuration) against the openAPIV3Schema of
  Dapr 1.18.2's own CRDs (deploy/schemas/dapr-1.18.2), made strict the same way;
- the chart's contract: Dapr annotations (known keys, app ids, ports, tokens, health checks), the
  drain arithmetic against the figures in the gateway's code, selectors that match, secrets by
  reference only, the settings each values file promises, and parity with components/.
Renders that must be refused (bad values) are checked to fail.

Runs with the deploy venv's Python (kubernetes-validate, jsonschema, PyYAML); no cluster needed.
Ends with one line "N passed, N failed"; the exit status is 1 when anything failed.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "tasksync"
DAPR_SCHEMAS = ROOT / "deploy" / "schemas" / "dapr-1.18.2"
# The chart's kubeVersion floor and the newest version kubernetes-validate bundles.
KUBE_VERSIONS = ("1.27.0", "1.37.0")

SCENARIOS: dict[str, list[str]] = {
    "default": [],
    "production": ["-f", "values-production.yaml"],
    "kafka": ["-f", "values-production.yaml", "-f", "values-kafka.yaml"],
    # Branches the values files leave off: fixed replicas (no HPA), the connections metric,
    # ingress without TLS, kafka without SASL.
    "options": [
        "-f", "values-kafka.yaml",
        "--set", "gateway.hpa.enabled=false",
        "--set", "gateway.ingress.enabled=true",
        "--set", "pubsub.kafka.authType=none",
        # No operator tokens; traces to a collector.
        "--set", "secrets.adminToken=",
        "--set", "secrets.metricsToken=",
        "--set", "configuration.tracingOtlpEndpoint=otel-collector.observability:4318",
    ],
    "connections-hpa": ["--set", "gateway.hpa.connections.enabled=true"],
}
# Values that must make the render fail, with a word of the expected message.
MUST_FAIL: dict[str, tuple[list[str], str]] = {
    "grace period below the drain": (
        ["--set", "gateway.terminationGracePeriodSeconds=20"], "below the drain time"),
    "unknown broker": (["--set", "pubsub.broker=nats"], "pubsub.broker must be"),
    "bulk with redis and app health checks": (
        ["--set", "subscription.bulk.enabled=true"], "daprd stops consuming"),
    "bulk with redis and gateway-only health checks": (
        ["--set", "subscription.bulk.enabled=true", "--set", "dapr.appHealth.enabled=false",
         "--set", "gateway.appHealth.enabled=true"], "daprd stops consuming"),
    "sessions grace below preStop": (
        ["--set", "sessions.terminationGracePeriodSeconds=12"], "sessions.terminationGrace"),
    "untemplated kafka auth": (
        ["-f", "values-kafka.yaml", "--set", "pubsub.kafka.authType=mtls"], "not templated"),
}

DAPR_KINDS = {
    ("dapr.io/v1alpha1", "Component"): "components.yaml",
    ("dapr.io/v1alpha1", "Configuration"): "configuration.yaml",
    ("dapr.io/v1alpha1", "Resiliency"): "resiliency.yaml",
    ("dapr.io/v2alpha1", "Subscription"): "subscription.yaml",
}


class Results:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> None:
        if ok:
            self.passed += 1
        else:
            self.failed.append(name)
            print(f"FAIL {name}" + (f": {detail}" if detail else ""), flush=True)

    def run(self, name: str, fn: Callable[[], None]) -> None:
        """A check whose failure is an AssertionError (or any error) with a message."""
        try:
            fn()
        except Exception as e:
            self.check(name, False, f"{type(e).__name__}: {e}")
        else:
            self.check(name, True)


# -- YAML without silent duplicates ---------------------------------------------------------------


class StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys; the API server refuses them. Refuse here too."""


def _no_duplicates(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def load_all(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.load_all(text, Loader=StrictLoader) if d]


# -- helm ------------------------------------------------------------------------------------------


def helm(helm_bin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_bin, *args], cwd=CHART, capture_output=True, text=True,
                          timeout=120)


def render(helm_bin: str, extra: list[str], kube: str) -> subprocess.CompletedProcess[str]:
    return helm(helm_bin, "template", "tasksync", ".", "--namespace", "tasksync",
                "--kube-version", kube, *extra)


# -- schemas ---------------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """Like the API server's strict field validation: an object schema with `properties` and no
    x-kubernetes-preserve-unknown-fields accepts no other field (else it would be pruned)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def dapr_schema(api_version: str, kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((DAPR_SCHEMAS / DAPR_KINDS[(api_version, kind)]).read_text())
    version = api_version.split("/")[1]
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            assert v["served"], f"{kind} {api_version} is not served by Dapr 1.18.2"
            schema = _strict(v["schema"]["openAPIV3Schema"])
            # metadata is `type: object` in CRDs (the API server checks it separately).
            schema["properties"]["metadata"] = {"type": "object"}
            return schema
    raise AssertionError(f"Dapr 1.18.2 has no {kind} version {version}")


def validate_object(obj: dict[str, Any], kube: str) -> None:
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in DAPR_KINDS:
        schema = dapr_schema(*key)  # type: ignore[arg-type]
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
        assert not errors, "; ".join(
            f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5])
        return
    if str(key[0]).startswith("dapr.io/"):
        raise AssertionError(f"no schema for Dapr kind {key}")
    # Raises SchemaNotFoundError for a kind/version this Kubernetes does not have: a failure here.
    try:
        kubernetes_validate.validate(obj, kube, strict=True)
    except jsonschema.ValidationError as e:  # its str() prints the whole schema
        raise AssertionError(f"{'.'.join(map(str, e.path))}: {e.message}") from None
    except kubernetes_validate.SchemaNotFoundError as e:
        raise AssertionError(e.message) from None


# -- the chart's contract --------------------------------------------------------------------------


def code_figures() -> dict[str, float]:
    """Drain figures as written in the gateway's code: the chart's arithmetic must match them."""
    hub = (ROOT / "gateway" / "hub.py").read_text()
    main = (ROOT / "gateway" / "__main__.py").read_text()
    client = (ROOT / "gateway" / "actor_client.py").read_text()
    sessions_main = (ROOT / "actors" / "__main__.py").read_text()
    found = {
        "hubDrainSeconds": re.search(r"_all_gone\.wait\(\),\s*([\d.]+)\)", hub),
        "uvicornGracefulSeconds": re.search(r"timeout_graceful_shutdown=(\d+)", main),
        "actorCallTimeoutSeconds": re.search(r"timeout_s: float = ([\d.]+)", client),
        "sessionsUvicornGracefulSeconds": re.search(r"timeout_graceful_shutdown=(\d+)",
                                                    sessions_main),
    }
    missing = [k for k, m in found.items() if m is None]
    assert not missing, f"could not find {missing} in the code: update deploy/check_chart.py"
    return {k: float(m.group(1)) for k, m in found.items() if m is not None}


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str, name_part: str) -> dict[str, Any]:
    found = [o for o in by_kind(objs, kind) if name_part in o["metadata"]["name"]]
    assert len(found) == 1, f"expected one {kind} named *{name_part}*, got {len(found)}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def meta(component: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in component["spec"]["metadata"]}


def iter_contract(objs: list[dict[str, Any]], scenario: str, values: dict[str, Any],
                  figures: dict[str, float], known_annotations: set[str]
                  ) -> Iterator[tuple[str, Callable[[], None]]]:
    deployments = {d["metadata"]["name"].rsplit("-", 1)[-1]: d for d in by_kind(objs, "Deployment")}

    def app(name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
        d = deployments[name]
        pod = d["spec"]["template"]
        return d, pod["spec"], pod["metadata"].get("annotations", {})

    def deployments_present() -> None:
        assert set(deployments) == {"gateway", "sessions"}, sorted(deployments)
    yield "two Deployments: gateway, sessions", deployments_present

    config_names = {o["metadata"]["name"] for o in by_kind(objs, "Configuration")}
    for name, port in (("gateway", 8001), ("sessions", 7100)):
        def dapr_annotations(name: str = name, port: int = port) -> None:
            _, spec, ann = app(name)
            unknown = sorted(k for k in ann if k.startswith("dapr.io/") and
                             k not in known_annotations)
            assert not unknown, f"annotations the Dapr 1.18.2 injector does not read: {unknown}"
            want = {
                "dapr.io/enabled": "true", "dapr.io/app-id": name, "dapr.io/app-port": str(port),
                "dapr.io/app-protocol": "http", "dapr.io/enable-app-health-check": "true",
                "dapr.io/app-health-check-path": "/healthz",
            }
            wrong = {k: ann.get(k) for k, v in want.items() if ann.get(k) != v}
            assert not wrong, f"annotations {wrong}, want {want}"
            for k in ("dapr.io/api-token-secret", "dapr.io/app-token-secret",
                      "dapr.io/app-health-probe-interval", "dapr.io/app-health-threshold",
                      "dapr.io/log-level"):
                assert ann.get(k), f"{k} missing"
            assert ann.get("dapr.io/config") in config_names, (
                f"dapr.io/config={ann.get('dapr.io/config')} names no rendered Configuration")
            assert all(isinstance(v, str) for v in ann.values()), "annotations must be strings"
            c = spec["containers"][0]
            assert [p["containerPort"] for p in c["ports"]] == [port], c["ports"]
            env = env_of(c)
            assert env["APP_PORT"]["value"] == str(port)
            assert env["TASKSYNC_BIND"]["value"] == "0.0.0.0"
            # Same Secrets as the sidecar's, key `token` (what the injector reads).
            for var, ann_key in (("DAPR_API_TOKEN", "dapr.io/api-token-secret"),
                                 ("APP_API_TOKEN", "dapr.io/app-token-secret")):
                ref = env[var]["valueFrom"]["secretKeyRef"]
                assert ref == {"name": ann[ann_key], "key": "token"}, (var, ref)
        yield f"{name}: Dapr annotations and token env", dapr_annotations

        def security(name: str = name) -> None:
            _, spec, _ = app(name)
            assert spec["securityContext"]["runAsNonRoot"] is True
            c = spec["containers"][0]["securityContext"]
            assert c["readOnlyRootFilesystem"] is True and c["allowPrivilegeEscalation"] is False
            assert c["capabilities"]["drop"] == ["ALL"]
            assert spec["automountServiceAccountToken"] is False
        yield f"{name}: non-root, read-only root fs", security

        def probes(name: str = name) -> None:
            _, spec, _ = app(name)
            c = spec["containers"][0]
            assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
        yield f"{name}: probes /readyz and /healthz", probes

        def pdb(name: str = name) -> None:
            d, _, _ = app(name)
            p = one(objs, "PodDisruptionBudget", name)
            labels = d["spec"]["template"]["metadata"]["labels"]
            sel = p["spec"]["selector"]["matchLabels"]
            assert sel.items() <= labels.items(), f"PDB selector {sel} matches no pod"
            assert sel == d["spec"]["selector"]["matchLabels"]
            floor = values[name]["hpa"]["minReplicas"] if (
                name == "gateway" and values["gateway"]["hpa"]["enabled"]) else values[name][
                "replicas"]
            assert p["spec"]["minAvailable"] < floor, (
                f"minAvailable {p['spec']['minAvailable']} >= replicas {floor}: no pod could "
                "ever be evicted")
        yield f"{name}: PodDisruptionBudget", pdb

    def gateway_pod() -> None:
        _, spec, _ = app("gateway")
        env = env_of(spec["containers"][0])
        assert env["TASKSYNC_REPLICA_ID"]["valueFrom"] == {
            "fieldRef": {"fieldPath": "metadata.name"}}
        ref = env["TASKSYNC_JWT_SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"], ref
        assert "value" not in env["TASKSYNC_JWT_SECRET"]
    yield "gateway: replica id from the pod name, JWT secret from a Secret", gateway_pod

    def gateway_health() -> None:
        _, _, ann = app("gateway")
        want = {**values["dapr"]["appHealth"], **values["gateway"].get("appHealth", {})}
        got = (ann["dapr.io/app-health-probe-interval"], ann["dapr.io/app-health-threshold"])
        assert got == (str(want["probeIntervalSeconds"]), str(want["threshold"])), got
        # The verdict on a dead gateway must come before its messages are re-claimed, or its
        # daprd may re-claim them itself (docs/operations.md, Failover).
        timeout_ms = int(values["pubsub"]["redisStreams"]["processingTimeout"])
        assert want["probeIntervalSeconds"] * want["threshold"] * 1000 <= timeout_ms, (
            "gateway health verdict slower than processingTimeout")
    yield "gateway: app health overrides, verdict within processingTimeout", gateway_health

    def optional_token(env: dict[str, dict[str, Any]], var: str, secret: str) -> None:
        if not secret:
            assert var not in env, f"{var} rendered although its Secret name is empty"
            return
        assert "value" not in env[var], f"{var} in plain text"
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": secret, "key": "token", "optional": True}, (var, ref)

    def operator_tokens() -> None:
        # The names the code reads (a rename there must show here).
        assert '"TASKSYNC_ADMIN_TOKEN"' in (ROOT / "gateway" / "config.py").read_text()
        assert '"TASKSYNC_METRICS_TOKEN"' in (ROOT / "vocab" / "scrape.py").read_text()
        s = values["secrets"]
        gw = env_of(app("gateway")[1]["containers"][0])
        sessions = env_of(app("sessions")[1]["containers"][0])
        optional_token(gw, "TASKSYNC_ADMIN_TOKEN", s["adminToken"])
        assert "TASKSYNC_ADMIN_TOKEN" not in sessions, "only the gateways serve /admin/"
        for env in (gw, sessions):
            optional_token(env, "TASKSYNC_METRICS_TOKEN", s["metricsToken"])
    yield "admin token (gateway) and metrics token (every app) from optional Secrets", \
        operator_tokens

    def tracing() -> None:
        (conf,) = by_kind(objs, "Configuration")
        t, cfg = conf["spec"]["tracing"], values["configuration"]
        assert t["samplingRate"] == cfg["tracingSamplingRate"]
        gw = env_of(app("gateway")[1]["containers"][0])
        endpoint = cfg["tracingOtlpEndpoint"]
        if not endpoint:
            assert "otel" not in t and "TASKSYNC_TRACING_ENDPOINT" not in gw
            return
        secure = bool(cfg["tracingOtlpSecure"])
        assert t["otel"] == {"endpointAddress": endpoint, "isSecure": secure, "protocol": "http"}
        scheme = "https" if secure else "http"
        assert gw["TASKSYNC_TRACING_ENDPOINT"]["value"] == f"{scheme}://{endpoint}"
    yield "tracing: daprd's exporter and the gateways' spans go to one collector", tracing

    def drain() -> None:
        d = values["gateway"]["drain"]
        for k in ("hubDrainSeconds", "uvicornGracefulSeconds", "actorCallTimeoutSeconds"):
            assert float(d[k]) == figures[k], (
                f"values gateway.drain.{k}={d[k]} but the code says {figures[k]}")
        _, spec, ann = app("gateway")
        pre = spec["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
        assert pre == ["sleep", str(d["preStopSleepSeconds"])], pre
        need = (d["preStopSleepSeconds"] + figures["hubDrainSeconds"]
                + figures["actorCallTimeoutSeconds"] + figures["uvicornGracefulSeconds"])
        grace = spec["terminationGracePeriodSeconds"]
        assert grace >= need + d["slackSeconds"], f"grace {grace} < drain {need} + slack"
        block = float(ann["dapr.io/block-shutdown-duration"].rstrip("s"))
        assert block >= d["preStopSleepSeconds"] + figures["hubDrainSeconds"] + figures[
            "actorCallTimeoutSeconds"], "daprd may stop before the last detach"
        daprd_total = block + float(ann["dapr.io/graceful-shutdown-seconds"])
        assert daprd_total <= grace, f"daprd may need {daprd_total} s > grace {grace} s"
    yield "gateway: drain arithmetic matches the code and the grace period", drain

    def sessions_drain() -> None:
        s = values["sessions"]
        _, spec, ann = app("sessions")
        grace = spec["terminationGracePeriodSeconds"]
        assert grace >= s["preStopSleepSeconds"] + figures["sessionsUvicornGracefulSeconds"]
        assert grace >= float(ann["dapr.io/graceful-shutdown-seconds"])
    yield "sessions: grace period covers preStop + uvicorn and daprd", sessions_drain

    def gateway_service() -> None:
        svc = one(objs, "Service", "gateway")
        labels = app("gateway")[0]["spec"]["template"]["metadata"]["labels"]
        assert svc["spec"]["selector"].items() <= labels.items()
        assert svc["spec"]["ports"][0]["targetPort"] == "http"
        assert not [s for s in by_kind(objs, "Service") if "sessions" in s["metadata"]["name"]]
    yield "gateway Service selects the gateway pods (sessions has none)", gateway_service

    def hpa() -> None:
        hpas = by_kind(objs, "HorizontalPodAutoscaler")
        d = app("gateway")[0]
        if not values["gateway"]["hpa"]["enabled"]:
            assert not hpas and d["spec"]["replicas"] == values["gateway"]["replicas"]
            return
        assert len(hpas) == 1 and "replicas" not in d["spec"], "HPA and fixed replicas together"
        h = hpas[0]
        assert h["apiVersion"] == "autoscaling/v2"
        assert h["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": d["metadata"]["name"]}
        types = [m["type"] for m in h["spec"]["metrics"]]
        want = ["Resource", "Pods"] if values["gateway"]["hpa"]["connections"]["enabled"] else [
            "Resource"]
        assert types == want, types
    yield "gateway HPA (autoscaling/v2) targets the gateway Deployment", hpa

    def ingress() -> None:
        ings = by_kind(objs, "Ingress")
        if not values["gateway"]["ingress"]["enabled"]:
            assert not ings
            return
        svc = one(objs, "Service", "gateway")["metadata"]["name"]
        paths = ings[0]["spec"]["rules"][0]["http"]["paths"]
        assert {p["backend"]["service"]["name"] for p in paths} == {svc}
        assert {p["path"] for p in paths} == {"/ws", "/sse", "/static", "/"}
        ann = ings[0]["metadata"]["annotations"]
        assert int(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
        assert ann["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    yield "ingress: public paths only, WebSocket/SSE timeouts", ingress

    components = {c["metadata"]["name"]: c for c in by_kind(objs, "Component")}

    def dapr_resources() -> None:
        stores = [c for c in components.values()
                  if meta(c).get("actorStateStore", {}).get("value") == "true"]
        assert len(stores) == 1 and stores[0]["scopes"] == ["sessions"], "one actor state store"
        assert "pubsub" in components and set(components["pubsub"]["scopes"]) == {
            "gateway", "producer"}
        sub = one(objs, "Subscription", "task-updates")
        assert sub["spec"]["pubsubname"] == "pubsub" and sub["spec"]["topic"] == "task-updates"
        assert sub["spec"]["routes"]["default"] == "/internal/dapr/task-updates"
        assert sub["spec"]["deadLetterTopic"], "dead-letter topic"
        gateway_health = {**values["dapr"]["appHealth"], **values["gateway"].get("appHealth", {})}
        if values["pubsub"]["broker"] == "redis" and gateway_health["enabled"]:
            assert "bulkSubscribe" not in sub["spec"], (
                "bulk subscribe with Redis + app health checks leaks daprd's workers")
        res = by_kind(objs, "Resiliency")
        assert len(res) == 1
        assert res[0]["spec"]["targets"]["components"]["pubsub"]["inbound"]["retry"]
        assert "timeout" not in str(res[0]["spec"]["targets"]["actors"]), (
            "no actor timeout (breaks 1.18 actor calls)")
    yield "Dapr: one actor state store, pubsub, subscription with dead letter, resiliency", \
        dapr_resources

    def secrets_by_reference() -> None:
        # Nothing secret in plain text: passwords only through secretKeyRef + a secret store.
        assert not by_kind(objs, "Secret"), "the chart must not render Secrets"
        for d in by_kind(objs, "Deployment"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                for var, e in env_of(c).items():
                    if re.search(r"password|secret|token", var, re.I):
                        assert "value" not in e and e["valueFrom"]["secretKeyRef"]["name"], var
        for c in components.values():
            for name, m in meta(c).items():
                if re.search(r"password|secret|token", name, re.I):
                    where = f"{c['metadata']['name']}.{name}"
                    assert "secretKeyRef" in m and "value" not in m, where
                    assert c.get("auth", {}).get("secretStore") == "kubernetes"
    yield "secrets by reference only", secrets_by_reference

    redis_auth = scenario in ("production", "kafka")

    def redis_settings() -> None:
        redis_components = [c for c in components.values() if ".redis" in c["spec"]["type"]]
        want_types = {"state.redis"} if values["pubsub"]["broker"] == "kafka" else {
            "state.redis", "pubsub.redis"}
        assert {c["spec"]["type"] for c in redis_components} == want_types
        for c in redis_components:
            m = meta(c)
            assert m["enableTLS"]["value"] == ("true" if redis_auth else "false"), c["metadata"]
            assert ("redisPassword" in m) == redis_auth, c["metadata"]["name"]
            if redis_auth:
                assert m["redisPassword"]["secretKeyRef"]["name"]
    yield "Redis components: auth + TLS exactly where promised", redis_settings

    def pubsub_broker() -> None:
        p = components["pubsub"]
        m = meta(p)
        if values["pubsub"]["broker"] == "kafka":
            assert p["spec"]["type"] == "pubsub.kafka"
            assert m["brokers"]["value"]
            assert "consumerGroup" not in m or m["consumerGroup"]["value"]
            if values["pubsub"]["kafka"]["authType"] == "password":
                assert m["saslPassword"]["secretKeyRef"]["name"]
        else:
            assert p["spec"]["type"] == "pubsub.redis"
            for k in ("processingTimeout", "redeliverInterval", "concurrency", "queueDepth"):
                assert m[k]["value"].isdigit(), f"{k} must be bare milliseconds/count"
            # A count cap trims entries nobody read: accepted events would vanish (overload).
            assert "maxLenApprox" not in m, "maxLenApprox drops unconsumed events"
    yield "pub/sub broker settings", pubsub_broker


def parity_with_components(objs: list[dict[str, Any]]) -> None:
    """The default render says what components/ says (the local topology), except where a
    cluster differs: redisHost is a value instead of an envRef, enableTLS is explicit, the
    Resiliency is scoped, the OTLP exporter's address is the cluster's (off by default).
    components/resiliency.yaml has `initialInterval`, a field Dapr 1.18.2's Resiliency does not
    have (daprd drops it, the API server prunes it): the chart leaves it out."""
    local = {}
    for f in sorted((ROOT / "components").rglob("*.yaml")):
        for d in load_all(f.read_text()):
            local[(d["kind"], d["metadata"]["name"])] = d
    chart = {(o["kind"], o["metadata"]["name"]): o for o in objs
             if o["apiVersion"].startswith("dapr.io/")}
    assert set(local) == set(chart), f"local {sorted(local)} vs chart {sorted(chart)}"
    for key, want in local.items():
        got = copy.deepcopy(chart[key])
        want = copy.deepcopy(want)
        for d in (got, want):
            d.pop("metadata")
            if d["kind"] == "Component":
                d["spec"]["metadata"] = [m for m in d["spec"]["metadata"]
                                         if m["name"] not in ("redisHost", "enableTLS")]
            if d["kind"] == "Configuration":
                d["spec"]["tracing"].pop("otel", None)
            if d["kind"] == "Resiliency":
                d.pop("scopes", None)
                for policy in d["spec"]["policies"]["retries"].values():
                    policy.pop("initialInterval", None)
        assert got == want, f"{key}: chart {got} != components/ {want}"


def main() -> int:
    helm_bin = sys.argv[1]
    r = Results()
    known = set((DAPR_SCHEMAS / "annotations.txt").read_text().split())
    figures: dict[str, float] = {}
    r.run("drain figures found in the gateway's code", lambda: figures.update(code_figures()))
    base_values = yaml.safe_load((CHART / "values.yaml").read_text())
    t0 = time.monotonic()
    counts: dict[str, int] = {}

    for scenario, extra in SCENARIOS.items():
        lint = helm(helm_bin, "lint", ".", "--strict", "--kube-version", KUBE_VERSIONS[-1], *extra)
        r.check(f"[{scenario}] helm lint --strict", lint.returncode == 0,
                (lint.stdout + lint.stderr)[-2000:])
        values = merged_values(base_values, extra)  # for the contract checks
        objs: list[dict[str, Any]] | None = None
        for kube in KUBE_VERSIONS:
            objs = None
            out = render(helm_bin, extra, kube)
            r.check(f"[{scenario}] helm template (k8s {kube})", out.returncode == 0,
                    out.stderr[-2000:])
            if out.returncode != 0:
                continue
            try:
                objs = load_all(out.stdout)
            except yaml.YAMLError as e:
                r.check(f"[{scenario}] rendered YAML parses without duplicate keys", False, str(e))
                continue
            counts[scenario] = len(objs)
            for obj in objs:
                r.run(f"[{scenario}] k8s {kube} schema: {obj['kind']}/{obj['metadata']['name']}",
                      lambda obj=obj, kube=kube: validate_object(obj, kube))
        if objs is not None:  # contract on the newest render
            for name, fn in iter_contract(objs, scenario, values, figures, known):
                r.run(f"[{scenario}] {name}", fn)
            if scenario == "default":
                r.run("[default] Dapr resources equal components/ (local topology)",
                      lambda objs=objs: parity_with_components(objs))  # type: ignore[misc]
        else:
            r.check(f"[{scenario}] contract checks ran", False, "no usable render")

    for name, (extra, word) in MUST_FAIL.items():
        out = render(helm_bin, extra, KUBE_VERSIONS[-1])
        r.check(f"refused render: {name}", out.returncode != 0 and word in out.stderr,
                f"rc={out.returncode} stderr={out.stderr[-500:]!r}")

    print(f"objects per scenario: {counts}; {time.monotonic() - t0:.1f}s")
    if r.failed:
        print("failed: " + ", ".join(r.failed))
    print(f"{r.passed} passed, {len(r.failed)} failed")
    return 1 if r.failed else 0


def merged_values(base: dict[str, Any], extra: list[str]) -> dict[str, Any]:
    """values.yaml + -f files + --set a.b=c (scalars only), the way helm merges them."""
    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(
                out.get(k), dict) else copy.deepcopy(v)
        return out

    values = copy.deepcopy(base)
    it = iter(extra)
    for flag in it:
        arg = next(it)
        if flag == "-f":
            values = merge(values, yaml.safe_load((CHART / arg).read_text()))
        elif flag == "--set":
            path, raw = arg.split("=", 1)
            node = values
            *parents, leaf = path.split(".")
            for p in parents:
                node = node[p]
            node[leaf] = yaml.safe_load(raw)
        else:
            raise ValueError(flag)
    return values


if __name__ == "__main__":
    sys.exit(main())
