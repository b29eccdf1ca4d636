"""Every topic anonstream uses, with its configuration: specs, creation, checks.

`anonstream topics create [--check]` (`stream.cli.topics`) drives `create_topics`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stream.exceptions import TopicConfigError
from stream.settings import Settings

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
# The key topic must never hold a key past its retention, even when no worker is alive to
# delete it: segments roll hourly so time-based deletion can act on them.
KEYS_SEGMENT_MS = HOUR_MS


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, partitions and the configs anonstream relies on."""

    name: str
    partitions: int
    purpose: str
    configs: dict[str, str] = field(default_factory=dict)


def topic_specs(settings: Settings, *, key_retention_ms: int = 2 * DAY_MS) -> list[TopicSpec]:
    """The topics of the pipeline, named and sized from `settings`.

    `key_retention_ms` is the policy's key retention: the key topic deletes its records
    after it even if no worker runs (workers also delete expired keys themselves).
    """
    n = settings.partitions

    def delete(retention_ms: int) -> dict[str, str]:
        return {"cleanup.policy": "delete", "retention.ms": str(retention_ms)}

    compact = {"cleanup.policy": "compact"}
    return [
        TopicSpec(
            settings.topic_raw, n, "raw events from collectors", delete(settings.raw_retention_ms)
        ),
        TopicSpec(
            settings.topic_pseudonymized,
            n,
            "anonymized events keyed by subject pseudonym",
            delete(settings.intermediate_retention_ms),
        ),
        TopicSpec(
            settings.topic_deadletter,
            n,
            "invalid input with reason (restricted)",
            delete(settings.deadletter_retention_ms),
        ),
        TopicSpec(
            settings.topic_partials,
            n,
            "per-partition window partials",
            delete(settings.intermediate_retention_ms),
        ),
        TopicSpec(
            settings.topic_aggregates, n, "released aggregates (analytics team)", dict(compact)
        ),
        TopicSpec(settings.topic_consent, n, "consent and rights records", dict(compact)),
        TopicSpec(
            settings.topic_ledger, 1, "privacy ledger: budget spent per day (dp)", dict(compact)
        ),
        TopicSpec(
            settings.topic_keys,
            1,
            "pseudonym epoch keys (restricted)",
            {**delete(key_retention_ms), "segment.ms": str(KEYS_SEGMENT_MS)},
        ),
    ]


@dataclass(frozen=True)
class TopicReport:
    """What `create_topics` did or found, per topic."""

    created: list[str]
    ok: list[str]
    missing: list[str]
    mismatches: list[str]


def create_topics(
    settings: Settings, specs: list[TopicSpec], *, check_only: bool = False
) -> TopicReport:
    """Create the missing topics of `specs` (unless `check_only`); report config mismatches."""
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    from stream.kafka import admin_client

    created: list[str] = []
    ok: list[str] = []
    missing: list[str] = []
    mismatches: list[str] = []
    with admin_client(settings) as admin:
        existing = set(admin.list_topics())
        to_create = [spec for spec in specs if spec.name not in existing]
        if to_create and not check_only:
            try:
                admin.create_topics(
                    {
                        spec.name: {
                            "num_partitions": spec.partitions,
                            "replication_factor": settings.replication_factor,
                            "configs": spec.configs,
                        }
                        for spec in to_create
                    },
                    wait_for_metadata=True,
                )
            except TopicAlreadyExistsError:
                pass  # created concurrently by another process: checked below
            except KafkaError as exc:
                raise TopicConfigError(f"creating topics failed: {exc}") from None
            created = [spec.name for spec in to_create]
        elif to_create:
            missing = [spec.name for spec in to_create]
        present = [spec for spec in specs if spec.name in existing]
        if present:
            described = {t["name"]: t for t in admin.describe_topics([s.name for s in present])}
            configs = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present],
                config_filter="all",
            )
            topic_configs = configs.get("topic", configs.get("TOPIC", {}))
            for spec in present:
                problems = _compare(
                    spec, described.get(spec.name), topic_configs.get(spec.name, {})
                )
                if problems:
                    mismatches.extend(f"{spec.name}: {p}" for p in problems)
                else:
                    ok.append(spec.name)
    return TopicReport(created=created, ok=ok, missing=missing, mismatches=mismatches)


def _compare(
    spec: TopicSpec, described: dict[str, Any] | None, configs: dict[str, Any]
) -> list[str]:
    problems = []
    partitions = len(described["partitions"]) if described else 0
    if partitions != spec.partitions:
        problems.append(f"partitions {partitions}, expected {spec.partitions}")
    for key, expected in spec.configs.items():
        entry = configs.get(key)
        actual = entry.get("value") if isinstance(entry, dict) else entry
        if actual != expected:
            problems.append(f"{key}={actual}, expected {expected}")
    return problems


def missing_topics(settings: Settings, names: list[str]) -> list[str]:
    """The topics of `names` the broker does not have, in the order given."""
    from stream.kafka import admin_client

    with admin_client(settings) as admin:
        existing = set(admin.list_topics())
    return [name for name in names if name not in existing]


def _missing_message(missing: list[str]) -> str:
    return f"missing topic(s) {', '.join(missing)}; create them with `anonstream topics create`"


def require_topics(settings: Settings, names: list[str]) -> None:
    """Raise `TopicConfigError` naming the missing topics unless all of `names` exist."""
    missing = missing_topics(settings, names)
    if missing:
        raise TopicConfigError(_missing_message(missing))


def wait_for_topics(
    settings: Settings,
    names: list[str],
    *,
    timeout_s: float,
    poll_s: float = 2.0,
    on_missing: Callable[[list[str], float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> float:
    """Return once every topic of `names` exists, after at most `timeout_s` seconds.

    Checks every `poll_s` seconds; calls `on_missing(missing, waited_s)` after each check
    that found some missing. Raises `TopicConfigError` naming the topics still missing (and
    how long it waited) when `timeout_s` has passed. Returns the seconds waited.
    """
    started = clock()
    while True:
        missing = missing_topics(settings, names)
        waited = clock() - started
        if not missing:
            return waited
        if waited >= timeout_s:
            raise TopicConfigError(
                f"{_missing_message(missing)} (waited {waited:.0f} s of {timeout_s:g} s)"
            )
        if on_missing is not None:
            on_missing(missing, waited)
        sleep(min(poll_s, max(timeout_s - waited, 0.0)))


def partition_counts(settings: Settings, names: list[str]) -> dict[str, int]:
    """Partitions of each existing topic of `names` (as the broker has them)."""
    from stream.kafka import admin_client

    with admin_client(settings) as admin:
        described = admin.describe_topics(names)
    return {t["name"]: len(t["partitions"]) for t in described if t.get("partitions")}
