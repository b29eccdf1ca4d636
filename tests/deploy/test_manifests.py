"""The Kubernetes manifests: valid, hardened, and in line with the code.

Every manifest file and the rendered Kustomize output (base and production overlay) is
validated with `kubernetes-validate --strict` (built-in kinds) or against the CRD's own
schema (ServiceMonitor, PrometheusRule, ScaledObject: tests/deploy/schemas). Rendering uses
kustomize as `kubectl kustomize` ships it (or a `kustomize` binary).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema_rs
import kubernetes_validate
import pytest
import yaml

from anonymizers.policy import load_policy
from stream.settings import STAGES
from tests.deploy.support import (
    DEPLOY,
    KUBE,
    ROOT,
    SCHEMAS,
    containers,
    dockerfile_env,
    dockerfile_stages,
    exported_metric_names,
    metric_names_in,
    parse_cli,
    setting_variables,
)

BASE = KUBE / "base"
OVERLAY = KUBE / "overlays" / "production"
K8S_VERSION = kubernetes_validate.latest_version()
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrule_v1.json",
}
# The secret files the overlay's secretGenerator reads (provided by the operator).
SECRET_FILES = {
    "anonstream_sasl_password": "not-a-real-password",
    "ca.crt": "not a real CA\n",
    "key-encryption-key": "bm90IGEgcmVhbCBrZXk=\n",
}


# ------------------------------------------------------------------------------ rendering
def kustomize_command() -> list[str]:
    """kustomize as kubectl ships it, or its own binary; CI must have one (it fails there)."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    built = ROOT / "build" / "bin" / "kustomize"  # `make kustomize` builds it there
    if built.exists():
        return [str(built), "build"]
    reason = "neither kubectl nor kustomize is installed: cannot render the manifests"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def kustomize(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kustomize_command(), str(path)], capture_output=True, text=True, timeout=120
    )


def loaded(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def copy_tree(target: Path, *, with_secrets: bool) -> Path:
    """deploy/kubernetes copied to `target` without any secret file a developer may have
    put in the overlay (and, `with_secrets`, with made-up ones); returns the overlay."""
    shutil.copytree(
        KUBE, target, ignore=shutil.ignore_patterns("anonstream_sasl_password", "ca.crt")
    )
    overlay = target / "overlays" / "production"
    if with_secrets:
        for name, content in SECRET_FILES.items():
            (overlay / "secrets" / name).write_text(content)
    return overlay


@cache
def rendered_base() -> tuple[dict[str, Any], ...]:
    result = kustomize(BASE)
    assert result.returncode == 0, result.stderr
    return tuple(loaded(result.stdout))


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The production overlay rendered with made-up secret files."""
    path = copy_tree(tmp_path_factory.mktemp("kube") / "kubernetes", with_secrets=True)
    result = kustomize(path)
    assert result.returncode == 0, result.stderr
    return loaded(result.stdout)


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (document,) = [d for d in of_kind(documents, kind) if d["metadata"]["name"] == name]
    return document


def workers(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Stage -> its Deployment (found by the `--stage` of the container's command)."""
    found = {}
    for deployment in of_kind(documents, "Deployment"):
        (container,) = containers(deployment)
        found[parse_cli(container["args"]).params["stage"]] = deployment
    return found


def settings_data(documents: list[dict[str, Any]]) -> dict[str, str]:
    return dict(named(documents, "ConfigMap", "anonstream-settings")["data"])


# ----------------------------------------------------------------------------- validation
def validate(document: dict[str, Any]) -> None:
    """Raise unless `document` is valid: kubernetes-validate --strict, or its CRD's schema."""
    crd = CRD_SCHEMAS.get((document["apiVersion"], document["kind"]))
    if crd is None:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
        return
    schema = json.loads((SCHEMAS / crd).read_text())
    errors = [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(document)]
    if errors:
        raise AssertionError(f"{document['kind']} {document['metadata']['name']}: {errors}")


def manifest_files() -> list[Path]:
    """The manifest files the kustomizations list as resources (patches are partial objects:
    they are validated in the rendered overlay)."""
    files = []
    for kustomization in sorted(KUBE.rglob("kustomization.yaml")):
        for resource in yaml.safe_load(kustomization.read_text()).get("resources", []):
            path = (kustomization.parent / resource).resolve()
            if path.is_file():
                files.append(path)
    return files


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(KUBE)))
def test_every_manifest_file_validates_strictly(path: Path) -> None:
    """Each manifest file passes strict validation on its own."""
    documents = loaded(path.read_text())
    assert documents
    for document in documents:
        validate(document)


def test_the_rendered_base_and_overlay_validate_strictly(overlay: list[dict[str, Any]]) -> None:
    """Every object kustomize renders, base and production overlay, passes strict validation."""
    for document in [*rendered_base(), *overlay]:
        validate(document)
    kinds = {d["kind"] for d in overlay}
    assert {"ScaledObject", "ServiceMonitor", "PrometheusRule", "Secret"} <= kinds


def test_validation_rejects_unknown_fields(overlay: list[dict[str, Any]]) -> None:
    """The validators bite: an unknown field in a container or a CRD's spec is refused."""
    deployment = json.loads(json.dumps(workers(overlay)["release"]))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    for kind in ("ScaledObject", "ServiceMonitor", "PrometheusRule"):
        (document,) = of_kind(overlay, kind)
        broken = {**document, "spec": {**document["spec"], "minReplicas": 2}}
        with pytest.raises(AssertionError):
            validate(broken)


# ----------------------------------------------------------------------------- the secret
def test_the_base_ships_no_secret_and_the_overlay_needs_the_operators_files(
    tmp_path: Path,
) -> None:
    """No Secret (or placeholder value) in the base; the overlay refuses to render until the
    operator's secret files exist, and then every Secret reference resolves."""
    assert not of_kind(list(rendered_base()), "Secret")
    assert "secretGenerator" not in yaml.safe_load((BASE / "kustomization.yaml").read_text())
    result = kustomize(copy_tree(tmp_path / "bare", with_secrets=False))
    assert result.returncode != 0
    assert "anonstream_sasl_password" in result.stderr

    result = kustomize(copy_tree(tmp_path / "full", with_secrets=True))
    assert result.returncode == 0, result.stderr
    documents = loaded(result.stdout)
    secrets = of_kind(documents, "Secret")
    assert sorted(name for secret in secrets for name in secret["data"]) == sorted(SECRET_FILES)
    for secret in secrets:
        for name in secret["data"]:
            if name.startswith("anonstream_"):
                assert name.upper() in setting_variables(), name
    referenced = {
        volume["secret"]["secretName"]
        for kind in ("Deployment", "Job")
        for document in of_kind(documents, kind)
        for volume in document["spec"]["template"]["spec"]["volumes"]
        if "secret" in volume
    }
    assert referenced == {secret["metadata"]["name"] for secret in secrets}


def test_the_key_encryption_key_reaches_only_the_stages_that_hold_keys(tmp_path: Path) -> None:
    """The anonymize and aggregate workers mount the key-encryption key Secret and name the
    mounted file in ANONSTREAM_KEY_ENCRYPTION_KEY_FILE (without it they refuse to start); the
    release stage and the topics Job do not mount it."""
    result = kustomize(copy_tree(tmp_path / "full", with_secrets=True))
    assert result.returncode == 0, result.stderr
    documents = loaded(result.stdout)
    (kek,) = [s for s in of_kind(documents, "Secret") if "key-encryption-key" in s["data"]]
    holders = set()
    for kind in ("Deployment", "Job"):
        for document in of_kind(documents, kind):
            spec = document["spec"]["template"]["spec"]
            volumes = {
                volume["name"]: volume["secret"]["secretName"]
                for volume in spec["volumes"]
                if "secret" in volume
            }
            names = [name for name, secret in volumes.items() if secret == kek["metadata"]["name"]]
            if not names:
                continue
            holders.add(document["metadata"]["name"])
            (container,) = spec["containers"]
            (mount,) = [m for m in container["volumeMounts"] if m["name"] in names]
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env["ANONSTREAM_KEY_ENCRYPTION_KEY_FILE"] == (
                mount["mountPath"] + "/key-encryption-key"
            )
    assert {h.rsplit("-", 1)[-1] for h in holders} == {"anonymize", "aggregate"}


# --------------------------------------------------------------------- code and the image
def image_facts() -> tuple[int, dict[str, str]]:
    """(numeric user, ENV) of the Dockerfile's final stage."""
    final = dockerfile_stages((DEPLOY / "Dockerfile").read_text())[-1]
    (user,) = [arguments for instruction, arguments in final if instruction == "USER"]
    return int(user.split(":")[0]), dockerfile_env(final)


def test_workers_run_the_code_hardened_and_probed(overlay: list[dict[str, Any]]) -> None:
    """One Deployment per stage: a real command line, the image's user, a read-only root with
    the data dir and /tmp writable, probes on the served endpoints and port, resources."""
    uid, image_env = image_facts()
    found = workers(overlay)
    assert set(found) == set(STAGES)
    for stage, deployment in found.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert image_env["ANONSTREAM_DATA_DIR"] in mounts and "/tmp" in mounts
        assert not mounts[image_env["ANONSTREAM_DATA_DIR"]].get("readOnly", False)
        (port,) = container["ports"]
        assert port["containerPort"] == int(image_env["ANONSTREAM_WEB_PORT"])
        probes = {
            kind: container[f"{kind}Probe"]["httpGet"]
            for kind in ("startup", "readiness", "liveness")
        }
        assert probes["readiness"]["path"] == "/readyz"
        assert probes["liveness"]["path"] == "/healthz"
        assert probes["startup"]["path"] == "/healthz"
        assert {probe["port"] for probe in probes.values()} == {port["name"]}
        # the start-up probe lets the bounded topic wait run out before liveness counts
        startup = container["startupProbe"]
        wait_s = parse_cli(container["args"]).params["wait_for_topics_s"]
        assert wait_s > 0, stage
        assert startup["periodSeconds"] * startup["failureThreshold"] > wait_s
        resources = container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"]
        assert resources["limits"]["memory"]


def test_images_are_the_released_version_and_the_job_runs_a_real_command(
    overlay: list[dict[str, Any]],
) -> None:
    """Every container runs the overlay's image at the package's version; the topics Job runs
    `anonstream topics create` as the same hardened user, with resources."""
    uid, _ = image_facts()
    overlay_images = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())["images"]
    (image,) = overlay_images
    expected = f"{image['newName']}:{version('anonstream')}"
    for kind in ("Deployment", "Job"):
        for document in of_kind(overlay, kind):
            for container in containers(document):
                assert container["image"] == expected, document["metadata"]["name"]
    (job,) = of_kind(overlay, "Job")
    (container,) = containers(job)
    assert parse_cli(container["args"]).command.name == "create"
    assert container["args"][0] == "topics"
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == uid
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0


def test_every_variable_name_is_a_setting(overlay: list[dict[str, Any]]) -> None:
    """Every ANONSTREAM_* in the ConfigMap, a container's env and the image is a real setting."""
    known = setting_variables()
    _, image_env = image_facts()
    names = set(settings_data(overlay)) | {n for n in image_env if n.startswith("ANONSTREAM_")}
    for kind in ("Deployment", "Job"):
        for document in of_kind(overlay, kind):
            for container in containers(document):
                names |= {variable["name"] for variable in container.get("env", [])}
    assert names and names <= known, names - known


def test_the_geolocation_database_is_mounted_where_the_setting_points(
    overlay: list[dict[str, Any]],
) -> None:
    """The anonymize workers read the .mmdb from a read-only volume mounted at its directory."""
    (container,) = containers(workers(overlay)["anonymize"])
    env = {variable["name"]: variable["value"] for variable in container["env"]}
    path = Path(env["ANONSTREAM_GEO_DB_PATH"])
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[str(path.parent)]["readOnly"] is True


# ------------------------------------------------------------------- availability, network
def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels and the In operator)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def pod_labels(document: dict[str, Any]) -> dict[str, str]:
    return dict(document["spec"]["template"]["metadata"]["labels"])


def test_one_disruption_budget_per_stage(overlay: list[dict[str, Any]]) -> None:
    """Each stage's pods are covered by exactly one PodDisruptionBudget allowing one eviction."""
    budgets = of_kind(overlay, "PodDisruptionBudget")
    for stage, deployment in workers(overlay).items():
        covering = [b for b in budgets if selects(b["spec"]["selector"], pod_labels(deployment))]
        assert len(covering) == 1, stage
        assert covering[0]["spec"]["maxUnavailable"] == 1


def test_network_policies_allow_kafka_dns_and_monitoring_only(
    overlay: list[dict[str, Any]],
) -> None:
    """Every anonstream pod is under an egress policy (Kafka, DNS) and an ingress policy (the
    monitoring namespace on the metrics port only)."""
    policies = of_kind(overlay, "NetworkPolicy")
    pods = [*workers(overlay).values(), *of_kind(overlay, "Job")]
    _, image_env = image_facts()
    for pod in pods:
        applying = [p for p in policies if selects(p["spec"]["podSelector"], pod_labels(pod))]
        types = {t for p in applying for t in p["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}, pod["metadata"]["name"]
    egress = [rule for p in policies for rule in p["spec"].get("egress", [])]
    ports = sorted((port["protocol"], port["port"]) for rule in egress for port in rule["ports"])
    kafka_ports = {
        int(server.rpartition(":")[2])
        for server in settings_data(overlay)["ANONSTREAM_BOOTSTRAP_SERVERS"].split(",")
    }
    assert ports == sorted([("TCP", 53), ("UDP", 53), *(("TCP", port) for port in kafka_ports)])
    ingress = [rule for p in policies for rule in p["spec"].get("ingress", [])]
    (rule,) = ingress
    (source,) = rule["from"]
    assert source == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert [port["port"] for port in rule["ports"]] == [int(image_env["ANONSTREAM_WEB_PORT"])]


def test_metrics_service_and_service_monitor_reach_every_worker(
    overlay: list[dict[str, Any]],
) -> None:
    """The Service selects every worker (not the Job) on the http port; the ServiceMonitor
    selects the Service and scrapes /metrics on that port."""
    (service,) = of_kind(overlay, "Service")
    for deployment in workers(overlay).values():
        assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))
    (job,) = of_kind(overlay, "Job")
    assert not selects({"matchLabels": service["spec"]["selector"]}, pod_labels(job))
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    (monitor,) = of_kind(overlay, "ServiceMonitor")
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == port["name"] and endpoint["path"] == "/metrics"


def test_the_anonymize_stage_scales_on_lag_within_the_partition_count(
    overlay: list[dict[str, Any]],
) -> None:
    """KEDA scales the anonymize Deployment on a consumer-lag metric the workers export, between
    1 and ANONSTREAM_PARTITIONS replicas; the Deployment leaves its replica count to KEDA."""
    (scaled,) = of_kind(overlay, "ScaledObject")
    anonymize = workers(overlay)["anonymize"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == anonymize["metadata"]["name"]
    assert "replicas" not in anonymize["spec"]
    partitions = int(settings_data(overlay)["ANONSTREAM_PARTITIONS"])
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= partitions
    (trigger,) = scaled["spec"]["triggers"]
    names = metric_names_in(trigger["metadata"]["query"])
    assert names == {"anonstream_consumer_lag"}
    assert names <= exported_metric_names()
    assert 'stage="anonymize"' in trigger["metadata"]["query"]


# ---------------------------------------------------------------- alerts and the dashboard
REQUIRED_ALERT_METRICS = {
    "lag growing": "anonstream_consumer_lag",
    "commit age": "anonstream_commit_age_seconds",
    "dead-letter rate": "anonstream_events_deadlettered_total",
    "dead readers": "anonstream_alive",
    "key epoch stale": "anonstream_key_current",
    "geo database old": "anonstream_geo_database_age_seconds",
}


def slugs(markdown: str) -> set[str]:
    """Anchors of a page's headings as mkdocs' toc extension makes them."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\s-]", "", heading.lower()).strip()
        anchors.add(re.sub(r"[\s]+", "-", slug))
    return anchors


def test_alerts_cover_the_failure_modes_with_exported_metrics(
    overlay: list[dict[str, Any]],
) -> None:
    """Each required alert exists, reads only metrics the code exports, and links a runbook
    section that exists."""
    (rule_object,) = of_kind(overlay, "PrometheusRule")
    rules = [rule for group in rule_object["spec"]["groups"] for rule in group["rules"]]
    exported = exported_metric_names()
    used: set[str] = set()
    anchors = slugs((ROOT / "docs" / "guides" / "runbook.md").read_text())
    for rule in rules:
        names = metric_names_in(rule["expr"])
        assert names and names <= exported, (rule["alert"], names - exported)
        used |= names
        page, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert page == "docs/guides/runbook.md" and anchor in anchors, rule["alert"]
    for what, metric in REQUIRED_ALERT_METRICS.items():
        assert metric in used, what


def test_the_grafana_dashboard_reads_exported_metrics() -> None:
    """The dashboard JSON parses, and every panel queries metrics the code exports."""
    dashboard = json.loads((BASE / "grafana-dashboard.json").read_text())
    exported = exported_metric_names()
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = metric_names_in(target["expr"])
            assert names and names <= exported, (panel["title"], names - exported)


def test_the_metric_name_scan_finds_what_the_code_serves() -> None:
    """The source scan the tests above rely on finds known metrics and not made-up ones."""
    exported = exported_metric_names()
    assert {"anonstream_consumer_lag", "anonstream_events_consumed_total"} <= exported
    assert "anonstream_made_up_metric" not in exported


@pytest.mark.parametrize("path", [BASE / "policy.toml"], ids=["kubernetes-policy"])
def test_shipped_policy_files_are_valid(path: Path) -> None:
    """The policy shipped with the manifests passes `policy check`."""
    load_policy(path)
