"""`anonstream policy`: write, check and export the privacy team's policy file."""

from __future__ import annotations

import json
from pathlib import Path

import click

from anonymizers.exceptions import PolicyError
from anonymizers.policy import load_policy, policy_json_schema, render_default_policy_toml


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
        ctx.exit(1)
        return
    click.echo(
        f"{path}: ok (policy_version {policy.policy_version}, geo {policy.geo.granularity}, "
        f"k {policy.release.k_min_subjects}/{policy.release.k_search_terms}, "
        f"{len(policy.aggregation.metrics)} metrics, {len(policy.output.fields)} output fields)"
    )


@policy_cli.command("schema")
def schema_command() -> None:
    """Print the policy's JSON Schema (the content of schemas/policy.v1.json)."""
    click.echo(json.dumps(policy_json_schema(), indent=2, ensure_ascii=False))
