"""Static checks of the deployment files in ``deploy/`` (no Docker engine or cluster needed).

The compose file, the Kubernetes manifests, the Dockerfile and the entry point are parsed
and checked against each other and against the code: every ``MJFLOW_*`` variable they name
is a real setting, the configured values pass ``Settings`` validation, queue names match
the Celery app, selectors match pod labels. The manifests are validated against the
Kubernetes JSON schemas offline with ``kubernetes-validate`` when it is installed, the
kustomization is rendered with ``kubectl kustomize`` and ``redis.conf`` is loaded by a real
``redis-server`` when those binaries are present.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from worker.dev.localnet import free_port

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
REDIS_CONF = DEPLOY / "redis.conf"
ENV_EXAMPLE = DEPLOY / ".env.example"

APP_SERVICES = ("web", "worker", "beat")
CRD_API_GROUPS = ("keda.sh/",)          # custom resources: no bundled JSON schema
MJFLOW_VAR = re.compile(r"\bMJFLOW_[A-Z0-9_]*[A-Z0-9]")


# --- helpers ----------------------------------------------------------------------------------

def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes object in deploy/k8s (the kustomization excluded)."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def objects(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_docs() if doc["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in objects(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def containers(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    return deployment["spec"]["template"]["spec"]["containers"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_file_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}")


def interpolate(value: Any, variables: dict[str, str]) -> str:
    """Resolve compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}."""
    def sub(m: re.Match[str]) -> str:
        name, colon, op, arg = m.groups()
        present = name in variables and (not colon or variables[name] != "")
        if op == "?" and not present:
            raise KeyError(f"compose requires {name}: {arg}")
        if present:
            return variables[name]
        return arg if op == "-" else ""

    return _INTERP.sub(sub, str(value)).replace("$$", "$")


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]):
    """Build worker.settings.Settings from exactly these variables (no .env, no leftovers)."""
    from worker.settings import Settings

    for key in list(os.environ):
        if key.startswith("MJFLOW_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("MJFLOW_"):
            monkeypatch.setenv(key, value)
    return Settings(_env_file=None)


# --- compose ----------------------------------------------------------------------------------

def test_compose_parses_with_the_expected_services():
    compose = load_compose()
    services = compose["services"]
    for name in ("redis", "s3", "s3-init", *APP_SERVICES, "flower"):
        assert name in services, name
    assert "x-mjflow-env" in compose
    assert "redis-data" in compose["volumes"]


def test_compose_redis_runs_with_aof_and_noeviction_config():
    redis_svc = load_compose()["services"]["redis"]
    assert str(redis_svc["image"]).startswith("redis:7")
    mounts = [str(v) for v in redis_svc["volumes"]]
    conf_mount = next(v for v in mounts if v.startswith("./redis.conf:"))
    conf_path = conf_mount.split(":")[1]
    assert conf_path in redis_svc["command"]
    assert any(v.startswith("redis-data:/data") for v in mounts), "persistent volume on /data"
    assert "redis-cli" in redis_svc["healthcheck"]["test"]


def redis_conf() -> dict[str, str]:
    conf = {}
    for line in REDIS_CONF.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key.lower()] = value.strip()
    return conf


def test_redis_conf_persists_with_aof_and_never_evicts():
    conf = redis_conf()
    assert conf["appendonly"] == "yes"
    assert conf["appendfsync"] == "everysec"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["dir"] == "/data"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_redis_conf_is_accepted_by_redis_server(tmp_path):
    import redis

    text = REDIS_CONF.read_text().replace("\ndir /data\n", f"\ndir {tmp_path}\n")
    conf = tmp_path / "redis.conf"
    conf.write_text(text)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", str(conf), "--port", str(port), "--bind", "127.0.0.1",
         "--maxmemory", "64mb"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.5, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redis-server rejected redis.conf:\n{proc.stdout.read().decode()}")
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_app_services_build_the_image_and_are_configured(name):
    svc = load_compose()["services"][name]
    assert svc["image"] and svc["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
    assert svc["command"] == [name]
    env = svc["environment"]
    assert env["MJFLOW_REDIS_URL"], "MJFLOW_REDIS_URL must be set"
    assert "MJFLOW_STORAGE_URL" in env
    health = svc["healthcheck"]
    assert health["test"] and not health.get("disable")
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert svc["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"


def test_compose_env_comes_from_one_anchor():
    compose = load_compose()
    anchor = compose["x-mjflow-env"]
    for name in (*APP_SERVICES, "s3-init"):
        env = compose["services"][name]["environment"]
        for key, value in anchor.items():
            assert env[key] == value, f"{name}: {key} differs from x-mjflow-env"


def test_compose_web_health_uses_healthz_and_beat_is_single():
    services = load_compose()["services"]
    assert services["web"]["healthcheck"]["test"][-2:] == ["health", "web"]
    assert any(str(p).endswith(":8000") for p in services["web"]["ports"])
    assert services["beat"]["deploy"]["replicas"] == 1
    assert services["worker"]["healthcheck"]["test"][-2:] == ["health", "worker"]


def test_compose_optional_services_are_behind_profiles():
    services = load_compose()["services"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["flower"]["build"]["target"] == "flower"
    assert services["sim"]["profiles"] == ["sim"]


def test_compose_redis_url_points_at_the_redis_service():
    compose = load_compose()
    url = urlparse(interpolate(compose["x-mjflow-env"]["MJFLOW_REDIS_URL"], {}))
    assert url.scheme == "redis" and url.hostname == "redis"


def test_compose_env_with_the_example_env_file_is_valid_settings(monkeypatch):
    """What `cp .env.example .env && docker compose up` gives the containers validates."""
    variables = env_file_values(ENV_EXAMPLE)
    anchor = load_compose()["x-mjflow-env"]
    env = {key: interpolate(value, variables) for key, value in anchor.items()}
    settings = settings_from_env(monkeypatch, env)
    assert settings.redis_url == "redis://redis:6379/0"
    assert settings.storage_url.startswith("s3://")
    assert settings.api_keys, "the API needs a key"


def test_compose_requires_an_api_key():
    anchor = load_compose()["x-mjflow-env"]
    with pytest.raises(KeyError, match="MJFLOW_API_KEYS"):
        interpolate(anchor["MJFLOW_API_KEYS"], {})


# --- every MJFLOW_ name is a real setting ------------------------------------------------------

def deploy_text_files() -> list[Path]:
    files = [COMPOSE, DOCKERFILE, ENTRYPOINT, REDIS_CONF, ENV_EXAMPLE, DEPLOY / "README.md"]
    files += sorted(K8S.glob("*.yaml"))
    return [f for f in files if f.exists()]


def test_every_mjflow_variable_named_in_deploy_files_is_a_setting():
    from worker.settings import Settings

    fields = set(Settings.model_fields)
    unknown = {}
    for path in deploy_text_files():
        for name in MJFLOW_VAR.findall(path.read_text()):
            if name.removeprefix("MJFLOW_").lower() not in fields:
                unknown.setdefault(name, []).append(path.name)
    assert not unknown, f"MJFLOW_ names that are not fields of worker.settings.Settings: {unknown}"


def test_fixed_setting_names_are_all_used():
    text = COMPOSE.read_text() + "".join(p.read_text() for p in K8S.glob("*.yaml"))
    for name in ("MJFLOW_UPSTREAM_URL", "MJFLOW_UPSTREAM_KEY", "MJFLOW_UPSTREAM_PROFILE",
                 "MJFLOW_MAX_IN_FLIGHT", "MJFLOW_REDIS_URL", "MJFLOW_STORAGE_URL",
                 "MJFLOW_PUBLIC_URL", "MJFLOW_HOOK_SECRET", "MJFLOW_API_KEYS",
                 "MJFLOW_WEBHOOK_SECRET", "MJFLOW_ALLOW_PRIVATE_URLS"):
        assert name in text, name


# --- Dockerfile and entry point ---------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_is_multistage_slim_and_non_root():
    ins = dockerfile_instructions()
    froms = [rest for op, rest in ins if op == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in DOCKERFILE.read_text()
    assert any("pip wheel" in rest for op, rest in ins if op == "RUN")
    assert any("pip install" in rest and "mjflow[server]" in rest for op, rest in ins if op == "RUN")
    assert any("pip wheel" in rest and ".[server]" in rest for op, rest in ins if op == "RUN")
    assert ("COPY", "mjflow ./mjflow") in ins
    users = [rest for op, rest in ins if op == "USER"]
    assert users, "USER missing"
    final_user = users[-1].split(":")[0]
    assert final_user not in ("root", "0"), "must not run as root"
    assert final_user.isdigit(), "numeric USER lets runAsNonRoot verify it"
    assert ("EXPOSE", "8000") in ins
    health = [rest for op, rest in ins if op == "HEALTHCHECK"]
    assert health and "/healthz" in health[0] and "urllib" in health[0]
    assert ("CMD", '["web"]') in ins
    assert ("ENTRYPOINT", '["mjflow-entrypoint"]') in ins
    assert any(op == "COPY" and "deploy/entrypoint.sh" in rest for op, rest in ins)


def test_dockerfile_stages_exist_for_compose_targets():
    froms = re.findall(r"^FROM (\S+) AS (\S+)", DOCKERFILE.read_text(), re.MULTILINE)
    stages = {stage for _, stage in froms}
    compose = load_compose()
    for name, svc in compose["services"].items():
        target = (svc.get("build") or {}).get("target")
        if target:
            assert target in stages, f"{name}: no stage {target}"
    assert froms[-1] == ("base", "runtime"), "the default (last) stage is the runtime"


def test_dockerignore_keeps_the_venv_out_of_the_build_context():
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line for line in ignore if line and not line.startswith("#")]
    assert patterns[0] == "*", "allow-list: ignore everything, then re-include"
    for needed in ("!pyproject.toml", "!mjflow/", "!worker/", "!webhook/", "!simulator/",
                   "!deploy/entrypoint.sh"):
        assert needed in ignore


def run_entrypoint(*args: str, **env: str) -> str:
    full_env = {**os.environ, "ENTRYPOINT_DRY_RUN": "1", "BEAT_REMOTE_CONTROL": "0", **env}
    out = subprocess.run(["sh", str(ENTRYPOINT), *args], env=full_env, capture_output=True,
                         text=True, timeout=30, check=True)
    return out.stdout.strip()


def test_entrypoint_is_valid_sh():
    subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=True)
    assert os.access(ENTRYPOINT, os.X_OK) or "--chmod=0755" in DOCKERFILE.read_text()


def procfile_queues() -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("worker:"):
            return line.split(" -Q ")[1].split()[0].split(",")
    raise AssertionError("no worker line in Procfile")


def test_entrypoint_web_runs_gunicorn_like_the_procfile():
    cmd = run_entrypoint("web")
    assert cmd.startswith("gunicorn ")
    assert "--bind 0.0.0.0:8000" in cmd
    assert cmd.endswith("webhook:create_app()")
    assert "--bind 0.0.0.0:9001" in run_entrypoint("web", PORT="9001")
    assert run_entrypoint().startswith("gunicorn "), "web is the default role"


def test_entrypoint_worker_consumes_every_celery_queue():
    from worker.celery_app import QUEUES

    cmd = run_entrypoint("worker").split()
    assert cmd[:4] == ["celery", "-A", "worker.celery_app", "worker"]
    queues = cmd[cmd.index("-Q") + 1].split(",")
    assert sorted(queues) == sorted(QUEUES) == sorted(procfile_queues())
    assert "--concurrency 7" in run_entrypoint("worker", WORKER_CONCURRENCY="7")


def test_entrypoint_beat_and_health_commands():
    beat = run_entrypoint("beat", BEAT_SCHEDULE_FILE="/tmp/x")
    assert beat.startswith("celery -A worker.celery_app beat")
    assert "--schedule /tmp/x" in beat and "--enable-remote-control" not in beat
    assert "--enable-remote-control" in run_entrypoint("beat", BEAT_REMOTE_CONTROL="1")
    ping = run_entrypoint("health", "worker", HOSTNAME="pod-1")
    assert ping.startswith("celery -A worker.celery_app inspect ping")
    assert "--destination celery@pod-1" in ping
    assert "celerybeat@pod-1" in run_entrypoint("health", "beat", HOSTNAME="pod-1",
                                                BEAT_REMOTE_CONTROL="1")
    assert "/healthz" in run_entrypoint("health", "web")
    assert run_entrypoint("mjflow", "--help") == "mjflow --help"


def test_entrypoint_rejects_unknown_health_role():
    proc = subprocess.run(["sh", str(ENTRYPOINT), "health", "nope"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode != 0 and "unknown role" in proc.stderr


# --- Kubernetes manifests ---------------------------------------------------------------------

def test_every_manifest_parses_and_is_namespace_agnostic():
    docs = k8s_docs()
    assert len(docs) >= 10
    for filename, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), filename
        assert doc.get("metadata", {}).get("name"), filename
        assert "namespace" not in doc["metadata"], f"{filename}: keep manifests namespace-agnostic"


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def test_kustomization_lists_the_manifests_and_one_autoscaler():
    listed = kustomization()["resources"]
    for name in listed:
        assert (K8S / name).is_file(), name
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk - {"worker-scaledobject.yaml"}
    assert ("worker-hpa.yaml" in listed) != ("worker-scaledobject.yaml" in listed)
    images = {i["name"] for i in kustomization()["images"]}
    for dep in objects("Deployment"):
        for c in containers(dep):
            assert c["image"] in images, "the kustomization sets every image"


@pytest.mark.parametrize("name", ["mjflow-web", "mjflow-worker", "mjflow-beat"])
def test_deployments_are_complete(name):
    dep = one("Deployment", name)
    spec = dep["spec"]
    assert selects(spec["selector"]["matchLabels"], pod_labels(dep))
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod.get("automountServiceAccountToken") is False
    for c in containers(dep):
        assert c["image"]
        refs = {("configMapRef" in e and e["configMapRef"]["name"]) or e["secretRef"]["name"]
                for e in c["envFrom"]}
        assert refs == {"mjflow-config", "mjflow-secrets"}
        assert [next(iter(e)) for e in c["envFrom"]] == ["configMapRef", "secretRef"], \
            "the Secret comes last so it overrides the ConfigMap"
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name}: {kind}"
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["livenessProbe"]
        assert c["args"][0] in ("web", "worker", "beat")
    assert one("ConfigMap", "mjflow-config") and one("Secret", "mjflow-secrets")


def test_web_deployment_probes_and_replicas():
    dep = one("Deployment", "mjflow-web")
    assert dep["spec"]["replicas"] == 2
    (web,) = containers(dep)
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    assert ports["http"] == 8000
    for probe in ("readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"]["port"] in ("http", 8000)


def test_worker_deployment_shuts_down_warm_and_is_probed():
    dep = one("Deployment", "mjflow-worker")
    assert dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    assert "replicas" not in dep["spec"], "the autoscaler owns the replica count"
    (worker,) = containers(dep)
    command = worker["livenessProbe"]["exec"]["command"]
    assert command == ["mjflow-entrypoint", "health", "worker"]


def test_beat_is_a_single_replica_recreated():
    dep = one("Deployment", "mjflow-beat")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    assert not [h for h in objects("HorizontalPodAutoscaler")
                if h["spec"]["scaleTargetRef"]["name"] == "mjflow-beat"]


def test_service_selects_the_web_pods():
    svc = one("Service", "mjflow-web")
    web = one("Deployment", "mjflow-web")
    assert selects(svc["spec"]["selector"], pod_labels(web))
    for other in ("mjflow-worker", "mjflow-beat"):
        assert not selects(svc["spec"]["selector"], pod_labels(one("Deployment", other)))
    port_names = {p["name"] for c in containers(web) for p in c["ports"]}
    for port in svc["spec"]["ports"]:
        assert port["targetPort"] in port_names or port["targetPort"] == 8000


def test_ingress_routes_hooks_v1_and_root_to_the_service():
    ing = one("Ingress", "mjflow-web")
    svc = one("Service", "mjflow-web")
    svc_ports = {p["name"] for p in svc["spec"]["ports"]} | {p["port"] for p in svc["spec"]["ports"]}
    routed = {}
    for rule in ing["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == svc["metadata"]["name"]
            port = backend["port"].get("name", backend["port"].get("number"))
            assert port in svc_ports
            routed[path["path"]] = path["pathType"]
    assert {"/hooks", "/v1", "/"} <= set(routed)
    public = urlparse(one("ConfigMap", "mjflow-config")["data"]["MJFLOW_PUBLIC_URL"])
    assert public.hostname in {rule["host"] for rule in ing["spec"]["rules"]}


def test_pdbs_select_existing_pods():
    pdbs = objects("PodDisruptionBudget")
    assert {p["metadata"]["name"] for p in pdbs} >= {"mjflow-web", "mjflow-worker"}
    deployments = objects("Deployment")
    for pdb in pdbs:
        matched = [d for d in deployments
                   if selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(d))]
        assert len(matched) == 1, pdb["metadata"]["name"]
        assert matched[0]["metadata"]["name"] == pdb["metadata"]["name"]


def test_hpa_targets_the_worker_deployment():
    (hpa,) = objects("HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "Deployment", "mjflow-worker")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert one("Deployment", ref["name"])


def test_keda_scaledobject_targets_the_worker_and_watches_celery_lists():
    from worker.celery_app import QUEUES

    (so,) = objects("ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"]["name"] == "mjflow-worker"
    assert one("Deployment", "mjflow-worker")
    config = one("ConfigMap", "mjflow-config")["data"]
    prefix = config.get("MJFLOW_KEY_PREFIX", "mjflow")
    redis_url = urlparse(config["MJFLOW_REDIS_URL"])
    lists = []
    for trigger in so["spec"]["triggers"]:
        if trigger["type"] != "redis":
            continue
        meta = trigger["metadata"]
        assert meta["address"] == f"{redis_url.hostname}:{redis_url.port or 6379}"
        assert meta["databaseIndex"] == (redis_url.path.strip("/") or "0")
        assert int(meta["listLength"]) > 0
        lists.append(meta["listName"])
    assert f"{prefix}:celery:mjflow.submit" in lists
    for name in lists:
        assert name.startswith(f"{prefix}:celery:") and name.split(":", 2)[2] in QUEUES


def test_celery_list_names_match_the_celery_app_key_prefix():
    from worker.celery_app import make_celery
    from worker.settings import load_settings

    app = make_celery(load_settings(key_prefix="mjflow"))
    assert app.conf.broker_transport_options["global_keyprefix"] == "mjflow:celery:"


def test_configmap_and_secret_are_valid_settings(monkeypatch):
    config = one("ConfigMap", "mjflow-config")["data"]
    secret = one("Secret", "mjflow-secrets")["stringData"]
    assert not set(config) & set(secret), "a key lives in the ConfigMap or the Secret"
    for key in ("MJFLOW_UPSTREAM_KEY", "MJFLOW_HOOK_SECRET", "MJFLOW_API_KEYS",
                "MJFLOW_WEBHOOK_SECRET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert key in secret, key
        assert key not in config
    assert all(isinstance(v, str) for v in {**config, **secret}.values())
    settings = settings_from_env(monkeypatch, {**config, **secret})
    assert settings.public_url and settings.hook_secret
    assert settings.storage_url.startswith("s3://")


def test_secret_file_warns_to_use_a_secret_manager():
    text = (K8S / "secret.yaml").read_text().lower()
    assert "secret manager" in text and "placeholder" in text


# --- schema validation and rendering ----------------------------------------------------------

def test_manifests_validate_against_kubernetes_schemas():
    kv = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed (pip install 'kubernetes-validate>=1.37')")
    versions = ["1.29", str(kv.latest_version())]
    checked = 0
    for filename, doc in k8s_docs():
        if doc["apiVersion"].startswith(CRD_API_GROUPS):
            continue            # CRDs (KEDA) have no bundled schema
        for version in versions:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:
                pytest.fail(f"{filename} {doc['kind']} invalid for Kubernetes {version}: {exc}")
        checked += 1
    assert checked >= 10


def kustomize(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomization_renders_and_swaps_to_keda(tmp_path):
    rendered = kustomize(K8S)
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds.count("Deployment") == 3 and "HorizontalPodAutoscaler" in kinds
    assert "ScaledObject" not in kinds
    for dep in (d for d in rendered if d["kind"] == "Deployment"):
        for c in containers(dep):
            assert ":" in c["image"], "kustomize pins the image tag"

    keda = tmp_path / "k8s"
    shutil.copytree(K8S, keda)
    text = (keda / "kustomization.yaml").read_text()
    (keda / "kustomization.yaml").write_text(
        text.replace("  - worker-hpa.yaml\n", "  - worker-scaledobject.yaml\n"))
    kinds = [d["kind"] for d in kustomize(keda)]
    assert "ScaledObject" in kinds and "HorizontalPodAutoscaler" not in kinds
