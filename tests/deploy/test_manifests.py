"""The deployment files stay in line with the code: settings names, commands, endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from anonymizers.policy import load_policy
from stream.cli import COMMANDS
from stream.settings import ENV_PREFIX, STAGES, Settings
from tests.support.paths import ROOT

DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(KUBE.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d.get("kind") == kind]


def test_every_configured_variable_is_a_setting() -> None:
    """Every ANONSTREAM_* in the ConfigMap names a real setting (or the secrets dir)."""
    fields = {name.upper() for name in Settings.model_fields} | {"SECRETS_DIR"}
    (config,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "anonstream-settings"]
    for variable in config["data"]:
        assert variable.startswith(ENV_PREFIX)
        assert variable.removeprefix(ENV_PREFIX) in fields, variable
    secret = by_kind("Secret")[0]
    for name in secret["stringData"]:
        if name.startswith(ENV_PREFIX.lower()):
            assert name.removeprefix(ENV_PREFIX.lower()).upper() in fields, name


def test_one_deployment_per_stage_with_probes_on_the_served_endpoints() -> None:
    """Each stage runs `anonstream worker --stage S` and is probed on /readyz and /healthz."""
    stages = {}
    for deployment in by_kind("Deployment"):
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[:2] == ["worker", "--stage"]
        stages[args[2]] = container
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert set(stages) == set(STAGES)


def test_job_and_image_commands_exist() -> None:
    """The topics Job and the image's default command call real CLI commands."""
    (job,) = by_kind("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] in COMMANDS
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["anonstream"]' in dockerfile
    assert 'CMD ["worker", "--stage", "anonymize"]' in dockerfile


@pytest.mark.parametrize("path", [KUBE / "policy.toml"], ids=["kubernetes-policy"])
def test_shipped_policy_files_are_valid(path: Path) -> None:
    """The policy shipped with the manifests passes `policy check`."""
    load_policy(path)
