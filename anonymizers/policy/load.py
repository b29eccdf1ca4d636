"""Reading a policy: every problem of a file reported in one pass, or a checked `Policy`.

`parse_policy(mapping)` validates each section on its own (pydantic), then runs every rule
that spans sections or that the statistics engine needs (`anonymizers.policy.checks`) on
the sections that validated, and raises `PolicyError` holding *every* problem found, each
rendered as `<path> must be <allowed>; got <value>`. `load_policy(path)` reads the TOML
file first. `default_policy()` is the shipped default (the privacy docs' defaults table).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from anonymizers.exceptions import PolicyError
from anonymizers.policy.checks import MODE_KEY, check_sections
from anonymizers.policy.issues import PolicyIssue, issues_from, render_value
from anonymizers.policy.model import (
    SCHEMA_VERSION,
    SECTIONS,
    Policy,
    PolicyHeader,
    ReleaseConfig,
    ReleaseMode,
)


def default_policy() -> Policy:
    """The shipped default: the privacy docs' defaults table (it passes every check)."""
    return Policy()


def policy_issues(mapping: Mapping[str, Any]) -> tuple[list[PolicyIssue], dict[str, Any]]:
    """Every problem of a policy mapping, and its scalars and sections that validated."""
    issues: list[PolicyIssue] = []
    top_fields = Policy.model_fields
    issues.extend(
        PolicyIssue(str(key), ", ".join(top_fields), None, "unknown")
        for key in mapping
        if key not in top_fields
    )
    if "schema_version" not in mapping:
        issues.append(
            PolicyIssue(
                "schema_version",
                f"{SCHEMA_VERSION} (the first line of a v1 policy file)",
                None,
                "missing",
            )
        )
    valid: dict[str, Any] = {
        k: mapping[k] for k in ("schema_version", "policy_version") if k in mapping
    }
    try:
        PolicyHeader.model_validate(valid)
    except ValidationError as exc:
        issues.extend(issues_from(exc, PolicyHeader, ()))
    sections: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        raw = mapping.get(name, {})
        if not isinstance(raw, Mapping):
            issues.append(PolicyIssue(name, "a table", render_value(raw)))
            continue
        try:
            sections[name] = model.model_validate(raw)
        except ValidationError as exc:
            issues.extend(issues_from(exc, model, (name,)))
            if name == "release":
                sections.update(_valid_mode(raw))
    issues.extend(check_sections(sections))
    sections.pop(MODE_KEY, None)
    return issues, {**valid, **sections}


def _valid_mode(release: Mapping[str, Any]) -> dict[str, str]:
    """{MODE_KEY: mode} when an invalid release section still names a valid mode."""
    mode = release.get("mode", ReleaseConfig.model_fields["mode"].default)
    return {MODE_KEY: mode} if mode in get_args(ReleaseMode) else {}


def parse_policy(mapping: Mapping[str, Any]) -> Policy:
    """Validate a policy mapping (a parsed TOML document); `PolicyError` lists every problem."""
    if not isinstance(mapping, Mapping):
        given = render_value(type(mapping).__name__)
        raise PolicyError([PolicyIssue("(policy)", "a table of settings", given)])
    issues, valid = policy_issues(mapping)
    if issues:
        raise PolicyError(issues)
    return Policy.model_validate(valid)


def load_policy(path: str | Path) -> Policy:
    """Read and validate a TOML policy file; `PolicyError` for an unreadable or invalid one."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise PolicyError(
            [PolicyIssue(str(path), "a readable policy file", render_value(exc.strerror))]
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([PolicyIssue(str(path), "valid TOML", render_value(str(exc)))]) from exc
    return parse_policy(document)
