"""The chaos processes' fast intervals name real settings: a misspelt variable would be
ignored silently and a scenario would wait the default (30 s heartbeats) instead."""

from __future__ import annotations

from engine.config import VARIABLES, load_settings
from tests.chaos.processes import FAST_ENV

#: Read by triggers/listener.py at import, not part of engine/config.py's VARIABLES.
LISTENER_MODULE_SETTINGS = {"HASTE_LISTENER_POLL_MS", "HASTE_LISTENER_BATCH"}


def test_every_fast_interval_is_a_known_variable_with_a_valid_value() -> None:
    known = {v.name for v in VARIABLES} | LISTENER_MODULE_SETTINGS
    ours = {name for name in FAST_ENV if name.startswith("HASTE_")}
    assert ours - known == set()
    settings = load_settings(FAST_ENV)  # ConfigError on a value the processes would refuse
    assert settings.heartbeat_timeout > settings.heartbeat_interval
    assert settings.reaper_interval < settings.reaper_grace
