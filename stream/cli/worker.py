"""`anonstream worker --stage S`: run one production worker of one stage."""

from __future__ import annotations

import click

from stream.settings import LOG_LEVELS, STAGES, Settings


@click.command("worker")
@click.option("--stage", type=click.Choice(STAGES), required=True, help="Pipeline stage to run.")
@click.option(
    "--loglevel",
    type=click.Choice(LOG_LEVELS),
    default=None,
    help="Log level (default: ANONSTREAM_LOG_LEVEL); the same names as the setting.",
)
@click.option(
    "--wait-for-topics",
    "wait_for_topics_s",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait for missing topics before giving up (0: exit at once). While it "
    "waits the worker logs the missing topics and answers /readyz 503, /healthz 200.",
)
def worker_cli(stage: str, loglevel: str | None, wait_for_topics_s: float) -> None:
    """Run a worker of one pipeline stage; start more to scale (one consumer group per stage)."""
    import logging.config

    import faust

    from stream.gcsettings import settle_after_startup
    from stream.kafka import require_reachable
    from stream.logs import logging_config
    from stream.settings import load_settings
    from stream.topics import require_topics, topic_specs
    from stream.worker import build_worker_app

    settings = load_settings()
    level = loglevel or settings.log_level
    # JSON lines from the first one (the topic wait, the geolocation database's age).
    logging.config.dictConfig(logging_config(level))
    require_reachable(settings)
    names = [spec.name for spec in topic_specs(settings)]
    if wait_for_topics_s > 0:
        wait_until_topics_exist(settings, names, stage=stage, timeout_s=wait_for_topics_s)
    else:
        require_topics(settings, names)
    app = build_worker_app(settings, stage)
    settle_after_startup(settings.gc_young_threshold)
    worker = faust.Worker(
        app,
        loglevel=level,
        redirect_stdouts=False,
        quiet=True,
        logging_config=logging_config(level),
    )
    worker.execute_from_commandline()


def wait_until_topics_exist(
    settings: Settings, names: list[str], *, stage: str, timeout_s: float
) -> None:
    """Wait (bounded) for `names`, serving the standby probes and logging what is missing."""
    import logging

    from stream.health.standby import StandbyServer
    from stream.topics import wait_for_topics

    log = logging.getLogger("stream.worker")
    logged: list[str] = []

    with StandbyServer(host=settings.web_host, port=settings.web_port, stage=stage) as standby:

        def report(missing: list[str], waited_s: float) -> None:
            standby.set_reasons([f"waiting for topics: {', '.join(missing)}"])
            if missing != logged:  # a line when the set changes, not every poll
                logged[:] = missing
                log.warning(
                    "waiting for topic(s) %s (%.0f s of at most %g s); not ready until they "
                    "exist: run `anonstream topics create`",
                    ", ".join(missing),
                    waited_s,
                    timeout_s,
                )

        waited = wait_for_topics(settings, names, timeout_s=timeout_s, on_missing=report)
    if logged:
        log.info("topics present after %.0f s; starting the %s worker", waited, stage)
