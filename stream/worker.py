"""The composition root: the Faust app of one stage, built from the settings and the policy.

Everything that can be wrong with the configuration (settings, policy, geo database, topic
retention) fails in `build_worker_app`, before the worker joins its consumer group. The
statistics engine's configs are made here, once, from the policy, and handed to the stages
unread; what the stream itself needs of the policy's aggregation section (window sizes,
lateness, idle timeout, metric names) it reads from the policy. `anonstream worker`
(`stream.cli.worker`) runs the app.
"""

from __future__ import annotations

from typing import Any

from anonymizers.chain import Pipeline
from anonymizers.consent import ConsentState
from anonymizers.policy import Policy, duration_seconds
from anonymizers.stats.config import AggregationSpec, ReleaseSpec, stats_specs
from stream.app import create_app
from stream.exceptions import SettingsError
from stream.resources import load_stream_policy, open_geo
from stream.settings import STAGES, Settings
from stream.stages.aggregate import AggregateRuntime, register_aggregate
from stream.stages.anonymize import AnonymizeRuntime, AnonymizeStage, register_anonymize
from stream.stages.release import ReleaseRuntime, register_release
from stream.tables.consent import ConsentTable
from stream.tables.keyring import KafkaKeyRing, clock_for, schedule_from_policy
from stream.topics import partition_counts

PUBLISHED_MARGIN_S = 3600
"""Extra hour of stats.aggregates the release stage reads back for published keys."""


def top_window_s(policy: Policy) -> int:
    """The policy's largest window size, seconds."""
    return max(duration_seconds(window) for window in policy.aggregation.windows)


def open_for_s(policy: Policy) -> int:
    """How long a top-level window can stay open after it starts, seconds: its size plus the
    allowed lateness and the idle timeout."""
    aggregation = policy.aggregation
    return (
        top_window_s(policy)
        + duration_seconds(aggregation.allowed_lateness)
        + duration_seconds(aggregation.idle_timeout)
    )


def replay_horizon_ms(policy: Policy) -> int:
    """How far back a restarted aggregate or release worker may replay its input, ms: the
    aggregate stage commits only the first offset its oldest open window needs (a top-level
    window plus the lateness and idle timeout old), and the release stage the first partial
    of the undecided top-level window; twice that leaves a window's worth of downtime."""
    return 2 * open_for_s(policy) * 1000


def published_horizon_s(policy: Policy) -> float:
    """How far back the release stage reads stats.aggregates for keys already published,
    seconds: every window not yet decided ended at most a top window, the lateness and the
    idle timeout ago (plus `PUBLISHED_MARGIN_S`)."""
    return float(top_window_s(policy) + open_for_s(policy) + PUBLISHED_MARGIN_S)


def require_replay_retention(settings: Settings, policy: Policy) -> None:
    """`SettingsError` unless events.pseudonymized and stats.partials keep their records
    longer than the replay horizon (otherwise a restart would find them deleted)."""
    needed = replay_horizon_ms(policy)
    if settings.intermediate_retention_ms < needed:
        raise SettingsError(
            f"ANONSTREAM_INTERMEDIATE_RETENTION_MS must be at least {needed} (twice the "
            "policy's largest window plus its lateness and idle timeout: a restarted "
            "aggregate or release worker replays that far); "
            f"got {settings.intermediate_retention_ms}"
        )


def build_worker_app(settings: Settings, stage: str) -> Any:
    """The Faust app of `stage` with its agents registered, ready for `faust.Worker`."""
    if stage not in STAGES:
        raise SettingsError(f"stage must be one of {', '.join(STAGES)}; got {stage!r}")
    policy = load_stream_policy(settings)
    if stage == "anonymize":
        app = create_app(settings, stage)
        add_anonymize(app, settings=settings, policy=policy)
        return app
    aggregation, release = stats_specs(policy)
    require_replay_retention(settings, policy)
    app = create_app(settings, stage)
    if stage == "aggregate":
        add_aggregate(app, settings=settings, policy=policy, configs=(aggregation, release))
    else:
        add_release(app, settings=settings, policy=policy, configs=(aggregation, release))
    return app


def _keyring(settings: Settings, policy: Policy) -> KafkaKeyRing:
    return KafkaKeyRing(settings, schedule_from_policy(policy), clock=clock_for(settings))


def add_anonymize(app: Any, *, settings: Settings, policy: Policy) -> None:
    """The anonymize stage: the policy's chain over the key ring and the consent table."""
    keyring = _keyring(settings, policy)
    consent = ConsentTable(settings, state=ConsentState(forms=policy.identifiers.forms()))
    pipeline = Pipeline.from_policy(
        policy, keys=keyring, geo=open_geo(settings), consent=consent.state
    )
    stage = AnonymizeStage(
        pipeline=pipeline,
        partitions=settings.partitions,
        max_message_bytes=settings.max_message_bytes,
    )
    runtime = AnonymizeRuntime(stage=stage, keyring=keyring, consent=consent, settings=settings)
    register_anonymize(app, runtime=runtime)


def add_aggregate(
    app: Any,
    *,
    settings: Settings,
    policy: Policy,
    configs: tuple[AggregationSpec, ReleaseSpec],
) -> None:
    """The aggregate stage, sending to as many partials partitions as the topic has."""
    aggregation, release = configs
    keyring = _keyring(settings, policy)  # first: no key-encryption key, no broker contact
    counts = partition_counts(settings, [settings.topic_partials])
    runtime = AggregateRuntime(
        settings,
        aggregation=aggregation,
        release=release,
        keyring=keyring,
        partials_partitions=counts[settings.topic_partials],
        forms=policy.identifiers.forms(),
    )
    register_aggregate(app, runtime=runtime)


def add_release(
    app: Any,
    *,
    settings: Settings,
    policy: Policy,
    configs: tuple[AggregationSpec, ReleaseSpec],
) -> None:
    """The release stage, merging the partials of every events.pseudonymized partition."""
    aggregation, release = configs
    counts = partition_counts(settings, [settings.topic_partials, settings.topic_pseudonymized])
    runtime = ReleaseRuntime(
        settings,
        aggregation=aggregation,
        release=release,
        metric_names=[metric.name for metric in policy.aggregation.metrics],
        published_horizon_s=published_horizon_s(policy),
        policy_version=policy.policy_version,
        sources=counts[settings.topic_pseudonymized],
        partials_partitions=counts[settings.topic_partials],
    )
    register_release(app, runtime=runtime)
