"""The deployment artefacts in ``deploy/`` hold what README "Deploying" promises.

Nothing is built or pulled: every manifest is parsed (PyYAML) and its fields checked, the
Dockerfile read instruction by instruction, and ``.env.example`` loaded into the settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
IMAGE = "cart-engine:1.0"
HTTP_PORT = 8000
SECRET = "cart-engine-secrets"
#: Environment variables that hold secrets: only ever by reference in a manifest.
SECRET_ENV = {"CART_ENGINE_AUTH_SECRET", "CART_ENGINE_WEBHOOK_SECRET", "REDIS_URL",
              "CART_ENGINE_REDIS_URL"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _k8s() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in _documents(p)]


def _one(kind: str) -> dict[str, Any]:
    found = [d for d in _k8s() if d["kind"] == kind]
    assert len(found) == 1, f"one {kind} expected, found {len(found)}"
    return found[0]


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template in the Kubernetes manifests."""
    for doc in _k8s():
        spec = doc.get("spec", {})
        if doc["kind"] == "RayCluster":
            yield "head", spec["headGroupSpec"]["template"]["spec"]
            for group in spec["workerGroupSpecs"]:
                yield f"worker group {group['groupName']}", group["template"]["spec"]
        elif "template" in spec:
            yield f"{doc['kind']} {doc['metadata']['name']}", spec["template"]["spec"]


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            pairs[name.strip()] = value.strip()
    return pairs


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_is_multi_stage_on_slim_python_311() -> None:
    froms = [args for word, args in _dockerfile() if word == "FROM"]
    assert len(froms) >= 2, "a build stage and a run stage"
    assert all(f.split()[0] == "python:3.11-slim" for f in froms)
    assert any(word == "COPY" and args.startswith("--from=") for word, args in _dockerfile())


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args for word, args in _dockerfile() if word == "USER"]
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric USER lets Kubernetes check runAsNonRoot"


def test_dockerfile_serves_with_cart_engine_serve_and_checks_healthz() -> None:
    instructions = dict(_dockerfile())
    assert json.loads(instructions["ENTRYPOINT"]) == ["cart-engine", "serve"]
    assert str(HTTP_PORT) in instructions["EXPOSE"].split()
    check = instructions["HEALTHCHECK"]
    assert f"127.0.0.1:{HTTP_PORT}/healthz" in check
    assert "CMD" in check


def test_docker_context_ignores_local_state() -> None:
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", ".cart-engine"} <= set(ignored)


# --------------------------------------------------------------------------- compose


def test_compose_redis_is_7_with_aof_always_on_a_volume() -> None:
    compose = _documents(DEPLOY / "docker-compose.yml")[0]
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[1].startswith("7")
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    volume, _, target = redis["volumes"][0].partition(":")
    assert target == "/data" and volume in compose["volumes"]


def test_compose_engine_builds_the_image_and_takes_env_from_the_example() -> None:
    compose = _documents(DEPLOY / "docker-compose.yml")[0]
    engine = compose["services"]["engine"]
    assert engine["image"] == IMAGE
    assert engine["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / engine["build"]["context"] / engine["build"]["dockerfile"]).is_file()
    assert engine["env_file"] == [".env"]
    assert f"{HTTP_PORT}:{HTTP_PORT}" in engine["ports"]
    assert engine["environment"]["REDIS_URL"].startswith("redis://redis:6379")
    assert engine["depends_on"]["redis"]["condition"] == "service_healthy"
    assert not SECRET_ENV - {"REDIS_URL"} & set(engine["environment"])


def test_env_example_has_no_secret_values_and_only_real_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = _env_example()
    assert "CART_ENGINE_AUTH_SECRET" in pairs
    for name in SECRET_ENV & set(pairs):
        assert pairs[name] == "", f"{name} has a value in .env.example"
    fields = set(GatewaySettings.model_fields)
    for name in pairs:
        assert name.startswith("CART_ENGINE_")
        assert name.removeprefix("CART_ENGINE_").lower() in fields, f"{name}: no such setting"
    # Filled in as the comment says, the file gives valid settings.
    for name, value in pairs.items():
        monkeypatch.setenv(name, value or "x" * 48)
    settings = GatewaySettings()
    assert settings.hosts == int(pairs["CART_ENGINE_HOSTS"])
    assert settings.auth_secret.get_secret_value() == "x" * 48


# --------------------------------------------------------------------------- Kubernetes


def test_every_manifest_parses_with_kind_and_name() -> None:
    docs = _k8s()
    assert {d["kind"] for d in docs} >= {"RayCluster", "Service", "StatefulSet"}
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]
    kustomization = _documents(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_raycluster_has_a_head_and_a_worker_group_on_the_engine_image() -> None:
    cluster = _one("RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", \
        "no actor hosts on the head"
    assert spec["workerGroupSpecs"], "no worker group"
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    for where, pod in _pod_specs():
        for c in pod["containers"]:
            if where != "StatefulSet cart-engine-redis":
                assert c["image"] == IMAGE, f"{where}/{c['name']}"


def test_serve_runs_beside_the_head_joining_its_ray() -> None:
    head = _one("RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    serves = [c for c in head["containers"]
              if c.get("command", [])[:2] == ["cart-engine", "serve"]]
    assert len(serves) == 1, "one `cart-engine serve` container on the head"
    (serve,) = serves
    args = serve["args"]
    assert args[args.index("--ray-address") + 1] == "127.0.0.1:6379"
    assert args[args.index("--port") + 1] == str(HTTP_PORT)
    mounts = {m["mountPath"] for m in serve["volumeMounts"]}
    ray_head = next(c for c in head["containers"] if c is not serve)
    assert "/tmp/ray" in mounts & {m["mountPath"] for m in ray_head["volumeMounts"]}


def test_workers_serve_http_with_probes_on_healthz_and_readyz() -> None:
    for group in _one("RayCluster")["spec"]["workerGroupSpecs"]:
        (worker,) = group["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in worker["ports"]}
        assert ports["http"] == HTTP_PORT
        assert worker["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert worker["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert worker["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_every_container_has_probes_and_resource_requests() -> None:
    for where, pod in _pod_specs():
        for c in pod["containers"]:
            requests = c["resources"]["requests"]
            assert requests["cpu"] and requests["memory"], f"{where}/{c['name']}"
            if "command" not in c:  # the `serve` supervisor exits on failure: restarted
                assert "readinessProbe" in c and "livenessProbe" in c, f"{where}/{c['name']}"


def test_service_targets_the_pods_serving_http() -> None:
    service = next(d for d in _k8s() if d["kind"] == "Service"
                   and d["metadata"]["name"] == "cart-engine-http")
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    selector = service["spec"]["selector"]
    selected = [g for g in _one("RayCluster")["spec"]["workerGroupSpecs"]
                if selector.items() <= g["template"]["metadata"]["labels"].items()]
    assert selected, "the Service selects no worker group"
    head_labels = _one("RayCluster")["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= head_labels.items(), "the head serves no HTTP"


def test_pods_run_as_non_root_without_privilege_escalation() -> None:
    for where, pod in _pod_specs():
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0, where
        for c in pod["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_secrets_are_referenced_never_written() -> None:
    assert not [d for d in _k8s() if d["kind"] == "Secret"], "a Secret with values"
    referenced = set()
    for where, pod in _pod_specs():
        for c in pod["containers"]:
            for env in c.get("env", []):
                if env["name"] in SECRET_ENV:
                    assert "value" not in env, f"{where}: {env['name']} written in"
                    ref = env["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == SECRET
                    referenced.add(env["name"])
    assert {"CART_ENGINE_AUTH_SECRET", "REDIS_URL"} <= referenced


def test_redis_statefulset_keeps_an_aof_always_on_a_volume() -> None:
    redis = _one("StatefulSet")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    assert container["image"].split(":")[1].startswith("7")
    args = container["args"]
    assert args[args.index("--appendfsync") + 1] == "always"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in \
        container["volumeMounts"]


# --------------------------------------------------------------------------- README


def test_readme_deploying_section_names_each_artefact_and_command() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    for name in ("deploy/Dockerfile", "deploy/docker-compose.yml", "deploy/.env.example",
                 "deploy/k8s", "redis.yaml", "raycluster.yaml", "cart-engine-http", SECRET,
                 "/healthz", "/readyz", IMAGE):
        assert name in section, name
    commands = [line.strip() for line in section.splitlines()]
    assert any("docker compose -f deploy/docker-compose.yml up" in c for c in commands)
    assert any("kubectl apply -k deploy/k8s" in c for c in commands)
    # The Secret the README creates carries the keys the manifests reference.
    created = set(re.findall(r"--from-literal=([a-z-]+)=", section))
    for _, pod in _pod_specs():
        for c in pod["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["key"] in created, ref["key"]


# --------------------------------------------------------------------------- consistency


def test_dockerfile_copies_only_what_the_repository_has() -> None:
    for word, args in _dockerfile():
        if word == "COPY" and not args.startswith("--from="):
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def _serve_settings(flags: list[str], env: dict[str, str],
                    monkeypatch: pytest.MonkeyPatch) -> GatewaySettings:
    """What ``cart-engine serve FLAGS`` makes of ``env`` (the CLI's own parser)."""
    from gateway.cli import _parser, settings_from

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_from(_parser().parse_args(["serve", *flags]))


def test_compose_engine_command_and_environment_are_valid_serve_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _documents(DEPLOY / "docker-compose.yml")[0]["services"]["engine"]
    env = {**{k: v or "x" * 48 for k, v in _env_example().items()},
           **{k: str(v) for k, v in engine["environment"].items()}}
    settings = _serve_settings(engine["command"], env, monkeypatch)
    assert settings.host == "0.0.0.0" and settings.port == HTTP_PORT
    assert settings.redis_url is not None
    assert str(settings.catalog) == "/opt/cart-engine/catalog.json"
    copied = [args for word, args in _dockerfile() if word == "COPY"
              and args.endswith(" /opt/cart-engine/catalog.json")]
    assert copied, "the image has no catalog where the compose command reads it"


def test_kubernetes_serve_args_and_environment_are_valid_serve_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    head = _one("RayCluster")["spec"]["headGroupSpec"]["template"]["spec"]
    (serve,) = [c for c in head["containers"] if "command" in c]
    env = {e["name"]: e.get("value", "x" * 48) for e in serve["env"]}
    for name in env:
        assert name == "REDIS_URL" or \
            name.removeprefix("CART_ENGINE_").lower() in GatewaySettings.model_fields, name
    env["REDIS_URL"] = "redis://cart-engine-redis:6379/0"
    settings = _serve_settings(serve["args"], env, monkeypatch)
    assert settings.ray_address == "127.0.0.1:6379" and settings.host == "0.0.0.0"
    assert settings.ingress == "hosts" and settings.placement == "ray"
    workers = sum(g["replicas"] for g in _one("RayCluster")["spec"]["workerGroupSpecs"])
    assert settings.hosts % workers == 0, "hosts spread evenly over the workers"
