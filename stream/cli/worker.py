"""`anonstream worker --stage S`: run one production worker of one stage."""

from __future__ import annotations

import click

from stream.settings import STAGES


@click.command("worker")
@click.option("--stage", type=click.Choice(STAGES), required=True, help="Pipeline stage to run.")
@click.option("--loglevel", type=click.Choice(["debug", "info", "warn", "error"]), default=None)
def worker_cli(stage: str, loglevel: str | None) -> None:
    """Run a worker of one pipeline stage; start more to scale (one consumer group per stage)."""
    import faust

    from stream.gcsettings import settle_after_startup
    from stream.kafka import require_reachable
    from stream.logs import logging_config
    from stream.settings import load_settings
    from stream.topics import require_topics, topic_specs
    from stream.worker import build_worker_app

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
