"""The Prometheus metrics of every haste process, defined once, here.

Each process imports this module and increments what it does (the listener its events and
decisions, workers their steps and executions, the scheduler its fires and reaper passes,
the AI worker its tokens and cost, the web process its webhooks and requests). Names
start with ``haste_``; labels are bounded sets (statuses, reasons, action types, queue,
provider and model names), never workspace, automation or execution ids: those are
unbounded, belong in logs (engine/logs.py binds them) and would make every series
explode. "Why did this automation fail?" is the decision log's and the execution
history's question, not Prometheus's.

How values leave a process (docs/operations.md, "Metrics"):

* **One host, several processes** (``haste up``, or a host running listener + workers):
  ``PROMETHEUS_MULTIPROC_DIR`` names a directory (``haste up`` sets
  ``$HASTE_DATA_DIR/metrics`` and empties it at start). prometheus_client then keeps each
  process's values in memory-mapped files there, Dramatiq's forked worker processes
  included, and one exporter per host adds them up at scrape time: the web process's
  ``/metrics``, or ``haste metrics serve`` on a host that runs no web process. The
  variable must be in the process's environment before prometheus_client is imported
  (it picks its value store at import), which an environment variable guarantees.
* **Unset**: values stay in each process's memory; only a process that serves them
  (``haste web``) can be scraped. Fine for a web-only host and for tests.
* **State that lives in PostgreSQL or Redis** (live executions by status, the outbox
  backlog and its age, events ever captured, queue depths, whether a scheduler leads) is
  not counted by any process: :mod:`engine.web.gauges` reads it at scrape time, so it is
  right however many processes and hosts there are, and survives their restarts.

Rejected: a push gateway (a second moving part, and stale series after a process dies);
one HTTP port per process (port juggling on a shared host, and Dramatiq forks processes
we do not control); counting terminal executions with ``count(*)`` at scrape time (cost
grows with history; finished executions are counted by the workers instead).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from engine import __version__

_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> Path | None:
    """The shared directory of this host's processes, when multiprocess mode is on."""
    raw = os.environ.get(_MULTIPROC_ENV) or os.environ.get(_MULTIPROC_ENV.lower())
    return Path(raw) if raw else None


def prepare_multiprocess_dir(path: Path) -> Path:
    """Create ``path`` and delete files a previous run left (``haste up`` calls this before
    starting processes): stale files would add dead processes' values to live ones."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)
    return path


# The directory must exist before the first metric is created in multiprocess mode.
_dir = multiprocess_dir()
if _dir is not None:
    _dir.mkdir(parents=True, exist_ok=True)

from prometheus_client import (  # noqa: E402  (after the directory exists)
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.registry import Collector  # noqa: E402

#: Latency buckets (seconds) for work measured in milliseconds: webhook intake, API calls.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Buckets for steps, executions and provider calls: milliseconds to minutes.
WORK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# --- build --------------------------------------------------------------------------------

BUILD_INFO = Gauge(
    "haste_build_info",
    "Always 1; the version label tells which haste a process runs.",
    ["version"],
    multiprocess_mode="max",
)

# --- events: capture (SQL triggers), emitters and the listener ---------------------------

EVENTS_EMITTED = Counter(
    "haste_events_emitted",
    "Events written to the outbox by Python emitters (webhooks, manual triggers, schedules);"
    " row changes are captured by SQL triggers and counted by haste_events_captured_total.",
    ["source"],
)
EVENTS_PROCESSED = Counter(
    "haste_events_processed",
    "Outbox events the listener finished: processed, failed (will be retried) or parked"
    " (gave up after HASTE_LISTENER_MAX_ATTEMPTS).",
    ["result"],
)
DECISIONS = Counter(
    "haste_decisions",
    "Decision-log rows written by the listener, by outcome (matched, filtered, ...).",
    ["outcome"],
)
EVENTS_DECODED = Counter(
    "haste_events_decoded",
    "Outbox events written by the logical-decoding capture (haste capture logical) from the"
    " WAL of CRM writes.",
)
DECODER_FAILURES = Counter(
    "haste_decoder_failures",
    "Decoding steps that failed (nothing of the step applied; the error is in"
    " automation_capture_state.last_error and `haste capture`).",
)
LISTENER_LAG = Histogram(
    "haste_listener_lag_seconds",
    "Time from an event's commit (created_at) to the listener finishing it.",
    buckets=(*FAST_BUCKETS, 10.0, 30.0, 60.0, 300.0),
)
LISTENER_BATCH = Histogram(
    "haste_listener_batch_seconds",
    "Duration of one listener batch (claim, match, complete).",
    buckets=FAST_BUCKETS,
)

# --- executions and steps (listener creates, workers run, reaper recovers) ----------------

EXECUTIONS_CREATED = Counter(
    "haste_executions_created",
    "Executions queued by the listener (one per matched event and automation).",
)
EXECUTIONS_FINISHED = Counter(
    "haste_executions_finished",
    "Executions that reached a final state: completed, failed or cancelled.",
    ["status"],
)
EXECUTION_DURATION = Histogram(
    "haste_execution_duration_seconds",
    "Wall time of a finished execution, first claim to finish (waits included).",
    ["status"],
    buckets=WORK_BUCKETS,
)
STEP_DURATION = Histogram(
    "haste_step_duration_seconds",
    "Duration of one step attempt, by action type and outcome (completed, failed, retry,"
    " skipped, waiting).",
    ["action", "outcome"],
    buckets=WORK_BUCKETS,
)
STEP_RETRIES = Counter(
    "haste_step_retries",
    "Step attempts that failed and were scheduled again, by action type and error class.",
    ["action", "error_class"],
)
ENQUEUE_FAILURES = Counter(
    "haste_enqueue_failures",
    "Messages that could not be sent to Redis (the reaper re-sends them after its grace).",
    ["queue"],
)
REAPER_RECOVERIES = Counter(
    "haste_reaper_recoveries",
    "Executions the reaper acted on: resent (message overdue), recovered (worker lost),"
    " failed (too many recoveries).",
    ["kind"],
)

# --- scheduler ------------------------------------------------------------------------------

SCHEDULER_LEADER = Gauge(
    "haste_scheduler_leader",
    "1 while this scheduler process holds the leader lock (summed over live processes).",
    multiprocess_mode="livesum",
)
#: Kinds of time-based fire: cron expression, one-off ``at``, per-record date field.
SCHEDULE_KINDS = ("cron", "at", "date_field")
#: What became of a due fire (see haste_schedule_fires_total).
SCHEDULE_OUTCOMES = ("on_time", "late", "misfired", "skipped")
SCHEDULE_FIRES = Counter(
    "haste_schedule_fires",
    "Time-based fires recorded by the scheduler, by kind (cron, at, date_field) and outcome:"
    " on_time (emitted within HASTE_SCHEDULE_MISFIRE_GRACE), late (emitted after it: a"
    " catch-up or a buffered fire), misfired (not run: misfire policy or catch-up window),"
    " skipped (not run: the previous run was still live).",
    ["kind", "outcome"],
)
DELAYS_WOKEN = Counter(
    "haste_delays_woken",
    "Waiting executions the scheduler moved back to queued because their delay was over.",
)
MAINTENANCE_RUNS = Counter(
    "haste_maintenance_runs",
    "Maintenance job runs (scheduled or haste schedule --run-job), by job and outcome"
    " (ok, failed).",
    ["job", "outcome"],
)
MAINTENANCE_DURATION = Histogram(
    "haste_maintenance_duration_seconds",
    "Duration of a maintenance job run.",
    ["job"],
    buckets=(*WORK_BUCKETS, 900.0, 3600.0),
)

# --- AI -------------------------------------------------------------------------------------

AI_REQUESTS = Counter(
    "haste_ai_requests",
    "Provider calls of AI tasks and embeddings, by provider, model and outcome (ok, retry,"
    " invalid_output, failed, failover).",
    ["provider", "model", "outcome"],
)
AI_TOKENS = Counter(
    "haste_ai_tokens",
    "Tokens billed by providers, by provider, model and kind (input, output).",
    ["provider", "model", "kind"],
)
AI_COST = Counter(
    "haste_ai_cost_cents",
    "Cost of provider calls in US cents (price table: HASTE_AI_PRICES, docs/ai.md).",
    ["provider", "model"],
)
AI_LATENCY = Histogram(
    "haste_ai_request_seconds",
    "Duration of one provider call.",
    ["provider"],
    buckets=WORK_BUCKETS,
)
AI_CACHE = Counter(
    "haste_ai_cache",
    "AI response cache look-ups, by result (hit, miss).",
    ["result"],
)
AI_BUDGET_BLOCKS = Counter(
    "haste_ai_budget_blocks",
    "AI tasks refused because a token or cost budget was spent, by scope (workspace, automation).",
    ["scope"],
)

# --- web: webhooks and the API --------------------------------------------------------------

#: Every reason a webhook is refused, with its HTTP status (engine/web/webhooks.py).
WEBHOOK_REJECT_REASONS: dict[str, int] = {
    "too_large": 413,
    "unknown_hook": 404,
    "unsupported_media_type": 415,
    "malformed": 400,
    "missing_signature": 401,
    "bad_signature": 401,
    "stale_timestamp": 401,
    "disabled": 409,
    "invalid_payload": 422,
}
WEBHOOK_REQUESTS = Counter(
    "haste_webhook_requests",
    "Webhook requests by outcome: accepted (a new event), replayed (a webhook-id seen"
    " before, answered with the first answer), rejected (see haste_webhook_rejects_total).",
    ["outcome"],
)
WEBHOOK_REJECTS = Counter(
    "haste_webhook_rejects",
    "Webhook requests refused (nothing written), by reason.",
    ["reason"],
)
WEBHOOK_INTAKE = Histogram(
    "haste_webhook_intake_seconds",
    "Time from a webhook's body being read to its answer (verification, outbox write).",
    ["outcome"],
    buckets=FAST_BUCKETS,
)
HTTP_REQUESTS = Counter(
    "haste_http_requests",
    "HTTP requests served by haste web, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "haste_http_request_seconds",
    "Duration of HTTP requests served by haste web, by route template.",
    ["route"],
    buckets=FAST_BUCKETS,
)


def _preset(metric: Any, label_sets: Iterable[tuple[str, ...]]) -> None:
    """Create the children of known label values, so their series exist (at 0) before the
    first increment: a rate() or an alert on a series that appears late misses its start."""
    for labels in label_sets:
        metric.labels(*labels)


BUILD_INFO.labels(__version__).set(1)
_preset(EVENTS_EMITTED, [("webhook",), ("manual",), ("time_based",)])
_preset(EVENTS_PROCESSED, [("processed",), ("failed",), ("parked",)])
_preset(EXECUTIONS_FINISHED, [("completed",), ("failed",), ("cancelled",)])
_preset(REAPER_RECOVERIES, [("resent",), ("recovered",), ("failed",)])
_preset(SCHEDULE_FIRES, [(k, o) for k in SCHEDULE_KINDS for o in SCHEDULE_OUTCOMES])
_preset(WEBHOOK_REQUESTS, [("accepted",), ("replayed",), ("rejected",)])
_preset(WEBHOOK_REJECTS, [(reason,) for reason in WEBHOOK_REJECT_REASONS])


def _mark_dead() -> None:
    """Let the live* gauges of this process drop out of the host's sum when it exits."""
    directory = multiprocess_dir()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), str(directory))


if _dir is not None:
    atexit.register(_mark_dead)


class _Union:
    """A registry-like view over several collectors, for one exposition."""

    def __init__(self, collectors: Iterable[Any]) -> None:
        self._collectors = list(collectors)

    def collect(self) -> Iterator[Any]:
        for collector in self._collectors:
            yield from collector.collect()


def process_registry() -> Any:
    """What this host's processes counted: the multiprocess directory's sum in
    multiprocess mode, else this process's own registry."""
    directory = multiprocess_dir()
    if directory is None:
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(directory))
    return registry


def exposition(*extra: Collector) -> tuple[bytes, str]:
    """The text format of every metric of this host plus ``extra`` collectors (the
    scrape-time gauges), and its content type."""
    return generate_latest(_Union([process_registry(), *extra])), CONTENT_TYPE_LATEST  # type: ignore[arg-type]


def metric_names() -> list[str]:
    """Every metric family this module defines (documentation and tests list them)."""
    return sorted(
        {m._name for m in globals().values() if isinstance(m, Counter | Gauge | Histogram)}
    )
