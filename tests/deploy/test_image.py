"""deploy/Dockerfile: numeric non-root user, pinned base, runtime only, real settings."""

from __future__ import annotations

import json
import re

from tests.deploy.support import (
    DEPLOY,
    dockerfile_env,
    dockerfile_stages,
    parse_cli,
    setting_variables,
)

TEXT = (DEPLOY / "Dockerfile").read_text()
STAGES = [stage for stage in dockerfile_stages(TEXT) if stage[0][0] == "FROM"]
FINAL = STAGES[-1]


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [arguments for instruction, arguments in stage if instruction == name]


def test_the_runtime_user_is_numeric_and_not_root() -> None:
    """USER is a numeric uid:gid (Kubernetes' runAsNonRoot can check it), not 0."""
    (user,) = instructions(FINAL, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) >= 10000
    assert gid.isdigit() and int(gid) != 0


def test_the_base_image_is_pinned() -> None:
    """Every stage's base is one ARG naming a Python 3.11 patch release (no floating tag)."""
    (argument,) = [a for i, a in dockerfile_stages(TEXT)[0] if i == "ARG"]
    name, _, base = argument.partition("=")
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base
    for stage in STAGES:
        assert instructions(stage, "FROM")[0].split()[0] == f"${{{name}}}"


def test_the_runtime_stage_installs_no_build_tools() -> None:
    """No compiler or apt install in the runtime stage; it installs wheels only."""
    runs = " ".join(instructions(FINAL, "RUN"))
    assert "apt-get" not in runs and "gcc" not in runs
    assert "pip install --no-cache-dir /wheels/*.whl" in runs
    assert "[dev]" not in TEXT and "[docs]" not in TEXT


def test_the_image_settings_and_command_are_real() -> None:
    """Its ANONSTREAM_* variables are settings; ENTRYPOINT + CMD is a real command line."""
    env = dockerfile_env(FINAL)
    names = {n for n in env if n.startswith("ANONSTREAM_")}
    assert names and names <= setting_variables()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # a read-only root: no .pyc written at run time
    (entrypoint,) = instructions(FINAL, "ENTRYPOINT")
    (command,) = instructions(FINAL, "CMD")
    assert entrypoint == '["anonstream"]'
    parse_cli([str(word) for word in json.loads(command)])
