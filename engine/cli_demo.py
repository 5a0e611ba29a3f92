"""``haste demo seed`` and ``haste demo traffic``: the demo workspace and its CRM traffic.

Thin edges over :mod:`engine.demo`. ``haste up --demo`` seeds before it starts the
processes and runs ``haste demo traffic`` beside them; neither is in the Procfile, which
stays what production runs.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

import click
import psycopg

from engine.cli import Runtime, main, pass_runtime


@main.group()
def demo() -> None:
    """The demo workspace (slug "demo") and a CRM traffic generator for it."""


def seed_database(database_url: str) -> None:
    """Seed and say what happened (shared by ``haste demo seed`` and ``haste up --demo``)."""
    from engine.automations import DeployError
    from engine.demo import SLUG, seed

    with psycopg.connect(database_url, autocommit=True) as conn:
        try:
            result = seed(conn)
        except DeployError as exc:
            raise click.ClickException(f"demo automation refused: {exc}") from None
    state = "created" if result.created else "already there (completed, nothing duplicated)"
    click.echo(
        f"demo workspace {SLUG!r} {state}: {result.contacts} seeded contacts,"
        f" {result.deals} seeded deals, {len(result.automations)} automations"
    )
    for name, version, changed in result.automations:
        click.echo(f"  {name}  v{version}{'  (deployed)' if changed else ''}")


@demo.command("seed")
@pass_runtime
def demo_seed(rt: Runtime) -> None:
    """Create the demo workspace and deploy examples/demo/*.json (safe to run again)."""
    from engine.migrations import MigrationError, migrate

    url = rt.database_url()
    try:
        migrate(url)
    except MigrationError as exc:
        raise click.ClickException(str(exc)) from None
    seed_database(url)


@demo.command("traffic")
@click.option(
    "--rate",
    type=click.FloatRange(0, 20, min_open=True),
    default=0.5,
    show_default=True,
    help="CRM changes per second (0.5 = one every 2 s on average).",
)
@click.option("--steps", type=click.IntRange(1), help="Stop after this many changes.")
@click.option("--seed", "rng_seed", type=int, help="Random seed, for a repeatable run.")
@pass_runtime
def demo_traffic(rt: Runtime, rate: float, steps: int | None, rng_seed: int | None) -> None:
    """Make realistic CRM changes in the demo workspace until SIGTERM / Ctrl-C."""
    import random

    from engine.demo import run_traffic

    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()  # the change in flight commits (or not) as a whole; then we exit

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    try:
        counts = run_traffic(
            rt.database_url(),
            rate=rate,
            stop=stop,
            steps=steps,
            rng=random.Random(rng_seed),
        )
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None
    made = ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "none"
    click.echo(f"demo traffic stopped; changes made: {made}", err=True)
