"""`anonstream worker --stage S`: run one production worker of one stage."""

from __future__ import annotations

import click

from stream.settings import STAGES, Settings, load_settings


def build_worker_app(settings: Settings, stage: str) -> object:
    """The Faust app of `stage` with its agents registered, ready for `faust.Worker`."""
    from stream.agents import register_anonymize
    from stream.anonymize import AnonymizeStage
    from stream.app import create_app
    from stream.pipeline import build_pipeline

    app = create_app(settings, stage)
    if stage == "anonymize":
        stage_logic = AnonymizeStage(
            pipeline=build_pipeline(settings),
            partitions=settings.partitions,
            max_message_bytes=settings.max_message_bytes,
        )
        register_anonymize(app, settings=settings, stage=stage_logic)
    else:
        raise click.UsageError(f"stage {stage!r} is not available in this version")
    return app


@click.command("worker")
@click.option("--stage", type=click.Choice(STAGES), required=True, help="Pipeline stage to run.")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warn", "error"]), default=None)
def worker_cli(stage: str, loglevel: str | None) -> None:
    """Run a worker of one pipeline stage; start more to scale (one consumer group per stage)."""
    import faust

    from stream.kafka import require_reachable

    settings = load_settings()
    require_reachable(settings)
    app = build_worker_app(settings, stage)
    level = loglevel or {"warning": "warn"}.get(settings.log_level, settings.log_level)
    from stream.logs import logging_config

    worker = faust.Worker(
        app,  # type: ignore[arg-type]
        loglevel=level,
        redirect_stdouts=False,
        logging_config=logging_config(level),
    )
    worker.execute_from_commandline()
