"""Local stand-ins for the systems actions talk to, for tests only.

Each listens on 127.0.0.1 with an ephemeral port and records what it received, so tests
assert on what actually crossed the wire and never reach the network:

* :mod:`fakes.smtp_server` — an aiosmtpd server (optionally with AUTH and refusals);
* :mod:`fakes.http_server` — a scripted HTTP server (status, headers, body, delay);
* :mod:`fakes.crm` — a seeded workspace (users, members, records) written as the owner.
* :mod:`fakes.executions` — the listener's side of a run: deploy an automation, insert
  queued executions, read back executions, step records and counters.
"""
