"""`anonstream worker --stage S`: run one production worker of one stage."""

from __future__ import annotations

from typing import Any

import click

from anonymizers.stats.config import AggregationSpec, stats_specs
from stream.exceptions import SettingsError
from stream.settings import STAGES, Settings, load_settings


def replay_horizon_ms(aggregation: AggregationSpec) -> int:
    """How far back a restarted aggregate or release worker may replay its input, ms: the
    aggregate stage commits only the first offset its oldest open window needs (a top-level
    window plus the lateness and idle timeout old), and the release stage the first partial
    of the undecided top-level window; twice that leaves a window's worth of downtime."""
    top = aggregation.windows[-1] + aggregation.allowed_lateness + aggregation.idle_timeout
    return 2 * top * 1000


def require_replay_retention(settings: Settings, aggregation: AggregationSpec) -> None:
    """`SettingsError` unless events.pseudonymized and stats.partials keep their records
    longer than the replay horizon (otherwise a restart would find them deleted)."""
    needed = replay_horizon_ms(aggregation)
    if settings.intermediate_retention_ms < needed:
        raise SettingsError(
            f"ANONSTREAM_INTERMEDIATE_RETENTION_MS must be at least {needed} (twice the "
            "policy's largest window plus its lateness and idle timeout: a restarted "
            "aggregate or release worker replays that far); "
            f"got {settings.intermediate_retention_ms}"
        )


def build_worker_app(settings: Settings, stage: str) -> Any:
    """The Faust app of `stage` with its agents registered, ready for `faust.Worker`.

    Everything that can be wrong with the configuration (settings, policy, geo database)
    fails here, before the worker joins its consumer group.
    """
    from anonymizers.chain import Pipeline
    from stream.app import create_app
    from stream.resources import load_stream_policy, open_geo
    from stream.stages.agents import (
        AggregateRuntime,
        AnonymizeRuntime,
        ReleaseRuntime,
        register_aggregate,
        register_anonymize,
        register_release,
    )
    from stream.stages.anonymize import AnonymizeStage
    from stream.tables.consent import ConsentTable
    from stream.tables.keyring import KafkaKeyRing, clock_for, schedule_from_policy
    from stream.topics import partition_counts

    policy = load_stream_policy(settings)
    if stage in ("aggregate", "release"):
        require_replay_retention(settings, stats_specs(policy)[0])
    app = create_app(settings, stage)
    if stage == "anonymize":
        keyring = KafkaKeyRing(settings, schedule_from_policy(policy), clock=clock_for(settings))
        consent = ConsentTable(settings)
        pipeline = Pipeline.from_policy(
            policy, keys=keyring, geo=open_geo(settings), consent=consent.state
        )
        stage_logic = AnonymizeStage(
            pipeline=pipeline,
            partitions=settings.partitions,
            max_message_bytes=settings.max_message_bytes,
        )
        runtime = AnonymizeRuntime(stage=stage_logic, keyring=keyring, consent=consent)
        register_anonymize(app, settings=settings, runtime=runtime)
    elif stage == "aggregate":
        aggregation, release = stats_specs(policy)
        counts = partition_counts(settings, [settings.topic_partials])
        runtime_agg = AggregateRuntime(
            settings,
            aggregation=aggregation,
            release=release,
            keyring=KafkaKeyRing(settings, schedule_from_policy(policy), clock=clock_for(settings)),
            partials_partitions=counts[settings.topic_partials],
        )
        register_aggregate(app, runtime=runtime_agg)
    elif stage == "release":
        aggregation, release = stats_specs(policy)
        counts = partition_counts(settings, [settings.topic_partials, settings.topic_pseudonymized])
        runtime_rel = ReleaseRuntime(
            settings,
            aggregation=aggregation,
            release=release,
            policy_version=policy.policy_version,
            sources=counts[settings.topic_pseudonymized],
            partials_partitions=counts[settings.topic_partials],
        )
        register_release(app, runtime=runtime_rel)
    else:
        raise click.UsageError(f"unknown stage {stage!r}")
    return app


@click.command("worker")
@click.option("--stage", type=click.Choice(STAGES), required=True, help="Pipeline stage to run.")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warn", "error"]), default=None)
def worker_cli(stage: str, loglevel: str | None) -> None:
    """Run a worker of one pipeline stage; start more to scale (one consumer group per stage)."""
    import faust

    from stream.gcsettings import settle_after_startup
    from stream.kafka import require_reachable
    from stream.logs import logging_config
    from stream.topics import require_topics, topic_specs

    settings = load_settings()
    require_reachable(settings)
    require_topics(settings, [spec.name for spec in topic_specs(settings)])
    app = build_worker_app(settings, stage)
    settle_after_startup(settings.gc_young_threshold)
    level = loglevel or {"warning": "warn"}.get(settings.log_level, settings.log_level)
    worker = faust.Worker(
        app,
        loglevel=level,
        redirect_stdouts=False,
        quiet=True,
        logging_config=logging_config(level),
    )
    worker.execute_from_commandline()
