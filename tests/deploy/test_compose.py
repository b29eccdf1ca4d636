"""deploy/compose.yaml: valid Compose, and every command and variable real."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import yaml

from anonymizers.policy import load_policy
from stream.local.demo import write_demo_policy
from stream.settings import STAGES
from tests.deploy.support import DEPLOY, SCHEMAS, parse_cli, setting_variables

COMPOSE = DEPLOY / "compose.yaml"
KAFKA_IMAGE = "apache/kafka"


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def anonstream_services() -> dict[str, dict[str, Any]]:
    """The services that run the anonstream image with its entry point `anonstream`."""
    return {
        n: s
        for n, s in services().items()
        if not s["image"].startswith(KAFKA_IMAGE) and "entrypoint" not in s
    }


def test_the_key_encryption_key_reaches_the_workers_that_need_it() -> None:
    """The `kek` service writes the key file with the project's own helper into the volume
    every worker mounts read-only and names in ANONSTREAM_KEY_ENCRYPTION_KEY_FILE."""
    kek = services()["kek"]
    assert "write_key_encryption_key" in kek["command"][0]
    (path,) = re.findall(r"Path\('([^']+)'\)", kek["command"][0])
    for name in ("anonymize", "aggregate", "release"):
        worker = services()[name]
        assert worker["environment"]["ANONSTREAM_KEY_ENCRYPTION_KEY_FILE"] == path
        assert f"kek:{path.rsplit('/', 1)[0]}:ro" in worker["volumes"]
        assert worker["depends_on"]["kek"]["condition"] == "service_completed_successfully"


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    return [str(e) for e in jsonschema_rs.validator_for(schema).iter_errors(document)]


def test_the_file_follows_the_compose_specification() -> None:
    """The file validates against the Compose Specification's JSON Schema."""
    assert schema_errors(compose()) == []


def test_the_schema_bites() -> None:
    """A misspelt service key or a condition Compose does not know is refused by the schema."""
    document = compose()
    document["services"]["topics"]["comand"] = ["topics", "create"]
    assert schema_errors(document)
    document = compose()
    document["services"]["anonymize"]["depends_on"]["topics"]["condition"] = "whenever"
    assert schema_errors(document)


@pytest.mark.parametrize("name", sorted(anonstream_services()))
def test_every_command_exists_in_the_cli(name: str) -> None:
    """Each anonstream service's command parses as `anonstream COMMAND` with real options."""
    parse_cli(anonstream_services()[name]["command"])


def test_every_environment_name_is_a_setting() -> None:
    """Every ANONSTREAM_* variable a service sets is read by the settings class."""
    known = setting_variables()
    for name, service in anonstream_services().items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), name
        assert set(environment) <= known, (name, set(environment) - known)


def test_the_whole_pipeline_is_there() -> None:
    """The three stages (waiting for their topics), topic creation, the generator and the
    dashboard adding up the three workers' metrics."""
    stages = {}
    for name, service in anonstream_services().items():
        context = parse_cli(service["command"])
        if context.command.name == "worker":
            stages[context.params["stage"]] = name
            assert context.params["wait_for_topics_s"] > 0
            assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert set(stages) == set(STAGES)
    commands = {parse_cli(s["command"]).command.name for s in anonstream_services().values()}
    assert {"create", "generate", "dashboard"} <= commands
    (dashboard,) = [s for s in anonstream_services().values() if s["command"][0] == "dashboard"]
    peers = parse_cli(dashboard["command"]).params["peers"]
    assert sorted(peers) == sorted(f"http://{n}:6066" for n in stages.values())


def test_kafka_runs_in_kraft_mode_with_the_tested_version() -> None:
    """The broker is the official image at the version the tests' broker uses, KRaft, no
    ZooKeeper, topics created by anonstream only."""
    pom = (DEPLOY / "local-kafka" / "pom.xml").read_text()
    (tested,) = re.findall(r"<kafka.version>([^<]+)</kafka.version>", pom)
    (kafka,) = [s for s in services().values() if s["image"].startswith(KAFKA_IMAGE)]
    assert kafka["image"] == f"{KAFKA_IMAGE}:{tested}"
    environment = kafka["environment"]
    assert set(environment["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert not any("ZOOKEEPER" in key for key in environment)
    assert environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    bootstrap = {
        s["environment"]["ANONSTREAM_BOOTSTRAP_SERVERS"] for s in anonstream_services().values()
    }
    assert bootstrap == {"kafka:9092"}
    assert "PLAINTEXT://kafka:9092" in environment["KAFKA_ADVERTISED_LISTENERS"]


def test_anonstream_containers_run_as_in_production() -> None:
    """Numeric non-root user and a read-only root file system with tmpfs for what it writes."""
    for name, service in anonstream_services().items():
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name


def test_the_policy_is_the_demo_policy(tmp_path: Path) -> None:
    """deploy/compose-policy.toml is what `anonstream demo` runs, and it is valid."""
    expected = write_demo_policy(tmp_path / "demo-policy.toml").read_text()
    assert (DEPLOY / "compose-policy.toml").read_text() == expected
    load_policy(DEPLOY / "compose-policy.toml")
