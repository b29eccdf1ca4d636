"""`anonstream policy`: write, check and export the privacy team's policy file."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from anonymizers.exceptions import PolicyError
from anonymizers.policy import (
    Policy,
    load_policy,
    policy_json_schema,
    render_default_policy_toml,
)
from anonymizers.policy.budget import allocate
from anonymizers.stats.plan import PlanRow
from stream.cli import ExitCode
from stream.cli.preview import plan_table, preview_files, window_text


@click.group("policy")
def policy_cli() -> None:
    """Write, check and export the anonymisation policy (TOML)."""


@policy_cli.command("init")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init_command(path: Path, force: bool) -> None:
    """Write the default policy, every setting commented, to PATH."""
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_default_policy_toml(), encoding="utf-8")
    click.echo(f"wrote the default policy to {path}")


@policy_cli.command("check")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def check_command(ctx: click.Context, path: Path) -> None:
    """Validate PATH: print every problem and exit 1, or a one-line summary and exit 0."""
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        count = len(exc.issues)
        click.echo(f"{path}: {count} error{'s' if count != 1 else ''}")
        for issue in exc.issues:
            click.echo(f"  {issue}")
        ctx.exit(ExitCode.PROBLEMS_FOUND)
        return
    click.echo(
        f"{path}: ok (policy_version {policy.policy_version}, geo {policy.geo.granularity}, "
        f"k {policy.release.k_min_subjects}/{policy.release.k_search_terms}, "
        f"{len(policy.aggregation.metrics)} metrics, {len(policy.output.fields)} output fields)"
    )
    if policy.release.mode == "dp":
        for line in allocation_lines(policy):
            click.echo(line)


@policy_cli.command("plan")
@click.option(
    "--events",
    "events_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL file of raw events, e.g. from `anonstream generate`.",
)
@click.option(
    "--policy",
    "policy_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy TOML file; the shipped default without it.",
)
@click.option(
    "--consent",
    "consent_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSONL file of consent records.",
)
@click.option(
    "--geo-db",
    "geo_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="MaxMind-format database; the bundled GeoLite2 City without it.",
)
def plan_command(
    events_path: Path, policy_path: Path | None, consent_path: Path | None, geo_path: Path | None
) -> None:
    """What a policy would release of these events, per metric and window size: cells,
    released, held back, share of the true count, median relative error, epsilon."""
    with tempfile.TemporaryDirectory(prefix="anonstream-plan-") as scratch:
        report = preview_files(
            events_path=events_path,
            out_dir=Path(scratch),
            policy_path=policy_path,
            geo_path=geo_path,
            consent_path=consent_path,
        )
    rows = [PlanRow(**row) for row in report["aggregates"]["plan"]]
    for line in plan_table(rows):
        click.echo(line)


@policy_cli.command("schema")
def schema_command() -> None:
    """Print the policy's JSON Schema (the content of schemas/policy.v1.json)."""
    click.echo(json.dumps(policy_json_schema(), indent=2, ensure_ascii=False))


def allocation_lines(policy: Policy) -> list[str]:
    """How a dp policy's daily budget is split (what `policy check` prints)."""
    budget = allocate(policy)
    release = policy.release
    lines = [
        f"release mode dp: at most epsilon {release.epsilon_per_day:g} and delta "
        f"{release.delta_per_day:g} per person-day (zCDP: rho {budget.rho_day:.4f} a day)",
        f"  {'metric':<24} {'window':>6} {'W/day':>5} {'rho/window':>11} {'sd people':>9} "
        f"{'threshold':>9} {'sd value':>9} {'eps share':>11}",
    ]
    for family in budget.families:
        value = "-" if family.sigma_value is None else f"{family.sigma_value:.1f}"
        people = f"{family.sigma_subjects:.1f}" if family.sigma_subjects else "-"
        lines.append(
            f"  {family.metric:<24} {window_text(family.window_seconds):>6} "
            f"{family.windows_per_day:>5} {family.rho:>11.5f} {people:>9} "
            f"{family.threshold:>9} {value:>9} {family.epsilon_share:>11.3f}"
        )
    lines.append(
        f"  worst case of a person-day: epsilon {budget.epsilon_day:.3f} of "
        f"{release.epsilon_per_day:g}, delta "
        f"{release.delta_per_day / 2 + budget.delta_thresholds:.3g} of {release.delta_per_day:g}"
    )
    return lines
