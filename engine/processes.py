"""The long-running processes of haste, as the Procfile lists them.

This tuple is the source of truth for ``haste up`` (which runs them under honcho, so an
installed wheel needs no Procfile on disk); the repository's ``Procfile`` mirrors it for
Foreman/honcho/Heroku-style platforms, and a test keeps the two in sync. Later work adds
web, listener, scheduler, worker and ai here.
"""

from __future__ import annotations

#: (name, command) pairs, in start order.
PROCESSES: tuple[tuple[str, str], ...] = (
    ("web", "haste web"),
    ("listener", "haste listen"),
    ("scheduler", "haste schedule"),
    ("worker", "haste worker"),
    ("ai", "haste worker --queues ai"),
)
