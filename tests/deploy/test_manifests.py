"""deploy/kubernetes/ and the Dockerfile, checked offline: every manifest against the
Kubernetes schemas kubernetes-validate bundles (strict: an unknown field fails), and the
facts that tie the files to each other and to the gateway."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml

from mcp_agg.config.document import Config
from mcp_agg.config.loading import load_config
from mcp_agg.front.probes import Probes

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
DOCKERFILE = REPO / "Dockerfile"
#: The newest Kubernetes whose schemas kubernetes-validate bundles.
K8S_VERSION = kubernetes_validate.latest_version()

Manifest = dict[str, Any]


def manifests() -> list[tuple[str, Manifest]]:
    """Every document of every manifest (kustomization.yaml is kustomize's, not the API's)."""
    return [
        (f"{path.name}:{doc['kind']}:{doc['metadata']['name']}", doc)
        for path in sorted(KUBERNETES.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
    ]


def find(kind: str, name: str) -> Manifest:
    found = [d for _, d in manifests() if (d["kind"], d["metadata"]["name"]) == (kind, name)]
    assert len(found) == 1, f"one {kind} {name!r} expected, found {len(found)}"
    return found[0]


def gateway_pod() -> dict[str, Any]:
    spec: dict[str, Any] = find("Deployment", "mcp-agg")["spec"]["template"]["spec"]
    return spec


def gateway_container() -> dict[str, Any]:
    (container,) = gateway_pod()["containers"]
    return dict(container)


def config_text() -> str:
    return str(find("ConfigMap", "mcp-agg-config")["data"]["servers.toml"])


def secret_env() -> dict[str, str]:
    """What the Deployment puts in the gateway's environment, from the example Secret."""
    secret = find("Secret", "mcp-agg")["stringData"]
    env: dict[str, str] = {}
    for var in gateway_container()["env"]:
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "mcp-agg", var
            assert ref["key"] in secret, f"{var['name']}: the Secret has no key {ref['key']}"
            env[var["name"]] = secret[ref["key"]]
        else:
            env[var["name"]] = var["value"]
    return env


def loaded_config(tmp_path: Path) -> Config:
    """The ConfigMap's servers.toml as a replica loads it, with the Deployment's env."""
    path = tmp_path / "servers.toml"
    path.write_text(config_text())
    return load_config(path, secret_env())


def dockerfile_cmd() -> list[str]:
    (line,) = re.findall(r"^CMD (.+)$", DOCKERFILE.read_text(), re.MULTILINE)
    cmd: list[str] = json.loads(line)
    return cmd


def option(argv: list[str], name: str) -> str:
    assert name in argv, f"{name} missing from {shlex.join(argv)}"
    return argv[argv.index(name) + 1]


@pytest.mark.parametrize(("where", "doc"), manifests(), ids=[w for w, _ in manifests()])
def test_each_manifest_is_valid_kubernetes(where: str, doc: Manifest) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_the_configmap_config_loads_with_the_fleet_settings(tmp_path: Path) -> None:
    config = loaded_config(tmp_path)
    env = secret_env()
    assert config.gateway.session_secret == env["MCP_AGG_SESSION_SECRET"]
    assert config.gateway.store is not None
    # Bound to 0.0.0.0 (the Dockerfile's CMD): refused without auth unless --insecure.
    assert config.gateway.auth is not None
    assert "--insecure" not in dockerfile_cmd()
    # The store URL names the example Redis's Service and port.
    store = httpx.URL(config.gateway.store.url)
    redis = find("Service", store.host)
    assert store.port in {p["port"] for p in redis["spec"]["ports"]}
    assert store.password == env["REDIS_PASSWORD"]
    # Every host the Service is reached by in the cluster is allowed.
    service, namespace = "mcp-agg", find("Namespace", "mcp-agg")["metadata"]["name"]
    hosts = config.gateway.allowed_hosts or []
    for name in (service, f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"):
        assert f"{name}:*" in hosts, name


def test_termination_grace_outlasts_the_drain(tmp_path: Path) -> None:
    gateway = loaded_config(tmp_path).gateway
    assert gateway.drain_seconds > 0, "without a drain, a stopping pod refuses requests at once"
    pod = gateway_pod()
    pre_stop = gateway_container().get("lifecycle", {}).get("preStop", {})
    sleep = pre_stop.get("sleep", {}).get("seconds", 0)
    needed = sleep + gateway.drain_seconds + gateway.shutdown_grace
    assert pod["terminationGracePeriodSeconds"] > needed


@pytest.mark.parametrize(
    ("probe", "state", "status"),
    [
        ("readinessProbe", "ready", 200),
        ("readinessProbe", "draining", 503),
        ("livenessProbe", "draining", 200),
        ("startupProbe", "starting", 200),
    ],
)
async def test_probes_ask_the_http_fronts_paths(probe: str, state: str, status: int) -> None:
    """The probe's path is one the front answers itself (not the app behind it), with the
    meaning Kubernetes gives the probe; on the container's port."""
    container = gateway_container()
    get = container[probe]["httpGet"]
    (port,) = [p for p in container["ports"] if get["port"] in (p["name"], p["containerPort"])]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    probes = Probes(app, mcp_path="/mcp")
    probes.state = state  # type: ignore[assignment]
    transport = httpx.ASGITransport(app=probes)
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.7") as client:
        response = await client.get(get["path"])
    assert response.status_code == status
    assert int(option(dockerfile_cmd(), "--port")) == port["containerPort"]


def test_the_dockerfile_serves_the_mounted_config_as_a_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.MULTILINE)
    cmd = dockerfile_cmd()
    assert cmd[:2] == ["mcp-agg", "serve"]
    assert option(cmd, "--transport") == "http"
    assert option(cmd, "--host") == "0.0.0.0"
    container = gateway_container()
    assert not {"command", "args"} & container.keys(), "the image's CMD runs"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in gateway_pod()["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == "mcp-agg-config"
    assert option(cmd, "--config") == f"{mount['mountPath']}/servers.toml"
    (user,) = re.findall(r"^USER (\d+)$", text, re.MULTILINE)
    assert int(user) != 0
    assert gateway_pod()["securityContext"]["runAsUser"] == int(user)
    assert gateway_pod()["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_service_hpa_and_pdb_select_the_gateway() -> None:
    deployment = find("Deployment", "mcp-agg")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 3
    service = find("Service", "mcp-agg")["spec"]
    assert service["selector"].items() <= labels.items()
    assert service.get("sessionAffinity", "None") == "None", "no sticky sessions"
    names = {p["name"] for p in gateway_container()["ports"]}
    assert {p["targetPort"] for p in service["ports"]} <= names
    pdb = find("PodDisruptionBudget", "mcp-agg")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    hpa = find("HorizontalPodAutoscaler", "mcp-agg")["spec"]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mcp-agg"}
    assert hpa["scaleTargetRef"] == target
    assert hpa["minReplicas"] >= deployment["spec"]["replicas"]


def test_the_secret_holds_only_marked_examples() -> None:
    values = find("Secret", "mcp-agg")["stringData"]
    assert values
    assert all(v.startswith("EXAMPLE-ONLY") for v in values.values()), values
    # The config references secrets by ${VAR}: none of their values is in its text.
    text = config_text()
    assert all(v not in text for v in values.values())
