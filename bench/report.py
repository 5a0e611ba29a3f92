"""The benchmark report: every goal figure beside its anchor, from bench/results/*.json.

``make bench`` runs every ``bench_*.py`` (bench/run_all.py) and then this script, which
reads the JSON each one wrote, describes the machine, and writes
``bench/results/summary.json`` and ``bench/results/summary.md`` (the table that
bench/README.md opens with). Run it alone to rebuild the table from existing results.

A figure missing from the results (a benchmark not run yet, or one that failed) is shown
as "not run", never filled in.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """What the figures were measured on (Linux /proc; other systems give less)."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
    try:
        out = subprocess.run(["nproc"], capture_output=True, text=True, check=True)
        info["nproc"] = int(out.stdout.strip())
    except (OSError, subprocess.CalledProcessError, ValueError):
        pass
    return info


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def dig(data: dict[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


Row = tuple[str, str, str, str, str]
"""(figure, haste, anchor measured in the same run, goal, met?)"""


def _ms(value: Any) -> str:
    return "not run" if value is None else f"{value} ms"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("yes" if ok else "**no**")


def _kept(x: dict[str, Any]) -> str:
    return f"{x['pct_of_baseline_tps']} % / {x['pct_of_baseline_by_cpu']} %"


def _meets(x: dict[str, Any]) -> str:
    return _met(min(x["pct_of_baseline_tps"], x["pct_of_baseline_by_cpu"] or 0) >= 80)


def rows_capture(data: dict[str, Any] | None) -> list[Row]:
    """Both capture modes against capture off, same run (bench_capture.py)."""
    rows = []
    for clients in ("8", "32"):
        by = dig(data, "results", clients) or {}
        on, logical, actor = by.get("on"), by.get("logical"), by.get("logical_actor")
        if on is None and logical is None:
            rows.append((f"capture, {clients} writers", "not run", "", "≥ 80 %", "—"))
            continue
        anchors = "; ".join(
            f"{label}: {_kept(x)}"
            for label, x in (
                ("per-row pg_notify", by.get("anchor_notify_per_row")),
                ("ids-only row", by.get("floor_ids_only")),
            )
            if x
        )
        if on:
            rows.append(
                (
                    f"capture, trigger mode: UPDATE throughput kept, {clients} writers"
                    " (tps / server CPU)",
                    _kept(on),
                    anchors,
                    "≥ 80 %",
                    _meets(on),
                )
            )
        for label, x in (("", logical), (", writers setting app.user_id", actor)):
            if x:
                decoding = x.get("decoding") or {}
                rows.append(
                    (
                        f"capture, logical mode{label}: UPDATE throughput kept, {clients}"
                        " writers (tps / server CPU)",
                        _kept(x),
                        f"decoding {decoding.get('events_per_s')} events/s, server"
                        f" {decoding.get('server_cpu_us_per_event')} µs + decoder"
                        f" {decoding.get('decoder_cpu_us_per_event')} µs CPU per event",
                        "≥ 80 %",
                        _meets(x),
                    )
                )
    return rows


def rows_capture_logical(data: dict[str, Any] | None) -> list[Row]:
    """What wal_level = logical itself costs (bench_capture_logical.py): the embedded
    server always runs with it."""
    if data is None:
        return [("wal_level logical vs replica", "not run", "", "—", "—")]
    kept = [
        f"{c} writers {_kept(x)}" for c in ("8", "32") if (x := dig(data, "results", c, "logical"))
    ]
    decode = dig(data, "decoding", "server_cpu_us_per_update_median")
    return [
        (
            "wal_level logical + REPLICA IDENTITY FULL, no trigger: writers keep"
            " (tps / server CPU)",
            "; ".join(kept) + (f"; slot read {decode} µs per UPDATE" if decode else ""),
            "wal_level replica, same run",
            "—",
            "—",
        )
    ]


def rows_e2e(data: dict[str, Any] | None, logical: dict[str, Any] | None = None) -> list[Row]:
    rows = _rows_e2e(data, "")
    if logical is not None:
        rows += _rows_e2e(logical, " (logical capture mode)")
    return rows


def _rows_e2e(data: dict[str, Any] | None, mode: str) -> list[Row]:
    g1, g2 = dig(data, "g1_50_per_s"), dig(data, "g2_sparse")
    hop = dig(data, "anchor_dramatiq_hop_same_broker") or {}
    hop50 = next((v for k, v in hop.items() if "50" in k), None)
    sparse = next((v for k, v in hop.items() if "sparse" in k and "default" in k), None)
    return [
        (
            f"G1{mode}: CRM commit → first action, 50 events/s (p50 / p99)",
            f"{_ms(dig(g1, 'p50_ms'))} / {_ms(dig(g1, 'p99_ms'))}",
            f"Dramatiq hop alone: {_ms(dig(hop50, 'p50_ms'))} / {_ms(dig(hop50, 'p99_ms'))}",
            "≤ 15 ms / ≤ 60 ms",
            _met(
                None
                if g1 is None
                else (g1.get("p50_ms", 1e9) <= 15 and g1.get("p99_ms", 1e9) <= 60)
            ),
        ),
        (
            f"G2{mode}: the same, one event every 1–2 s (p99)",
            _ms(dig(g2, "p99_ms")),
            f"Dramatiq hop, default poll: {_ms(dig(sparse, 'p99_ms'))}",
            "≤ 100 ms",
            _met(None if g2 is None else g2.get("p99_ms", 1e9) <= 100),
        ),
    ]


def _spread(g3: dict[str, Any]) -> str:
    """ ", median of N runs (low–high)" when the result lists its runs."""
    rates = sorted(r["executions_per_s"] for r in g3.get("runs") or [])
    if len(rates) < 2:
        return ""
    return f", median of {len(rates)} runs ({rates[0]}–{rates[-1]}/s)"


def rows_workers(data: dict[str, Any] | None) -> list[Row]:
    g3 = dig(data, "g3")
    rss = (dig(g3, "worker_rss_mb_peak") or []) if g3 else []
    return [
        (
            "G3: executions/s, one DB step each",
            "not run" if g3 is None else f"{g3['executions_per_s']}/s{_spread(g3)}",
            "",
            "≥ 1,000/s",
            _met(None if g3 is None else g3["executions_per_s"] >= 1000),
        ),
        (
            "G3: RSS per worker process (peak)",
            "not run" if not rss else f"{max(rss)} MB",
            "",
            "≤ 80 MB",
            _met(None if not rss else max(rss) <= 80),
        ),
    ]


def rows_schedule(data: dict[str, Any] | None) -> list[Row]:
    haste = dig(data, "haste")
    anchor = dig(data, "anchor_apscheduler_job_per_schedule")

    def lateness(d: Any) -> str:
        if d is None:
            return "not run"
        lat = d.get("lateness_s") or {}
        return f"p99 {lat.get('p99')} s, max {lat.get('max')} s, {d.get('missed')} missed"

    ok = None
    if haste is not None:
        lat = haste.get("lateness_s") or {}
        missed = haste.get("missed")
        ok = (lat.get("p99") or 1e9) <= 1 and (lat.get("max") or 1e9) <= 2 and missed == 0
    return [
        (
            "G7: 10,000 schedules, 5,000 due together (enqueue lateness)",
            lateness(haste),
            f"APScheduler, a job per schedule: {lateness(anchor)}",
            "p99 ≤ 1 s, max ≤ 2 s, 0 missed",
            _met(ok),
        )
    ]


def rows_embeddings(data: dict[str, Any] | None) -> list[Row]:
    verdict, exact = dig(data, "verdict"), dig(data, "exact")
    writers = dig(verdict, "upserts_per_s", "ivfflat") or {}
    upserts = max(writers.values()) if writers else None
    search = dig(verdict, "ivfflat_search") or {}
    p99, recall = search.get("p99_ms"), search.get("recall_at_10")
    return [
        (
            "G11: embeddings upserted/s at 100k (index present, best of 1–2 writers)",
            "not run" if upserts is None else f"{upserts}/s",
            "",
            "≥ 300/s",
            _met(None if upserts is None else upserts >= 300),
        ),
        (
            "G11: kNN p99 at 100k, recall@10",
            "not run" if p99 is None else f"{p99} ms at recall {recall}",
            f"exact kNN: max {_ms(dig(exact, 'max_ms'))}, p50 {_ms(dig(exact, 'p50_ms'))}",
            "≤ 20 ms at ≥ 0.95",
            _met(None if p99 is None or recall is None else p99 <= 20 and recall >= 0.95),
        ),
    ]


def rows_other(
    listener: dict[str, Any] | None,
    webhooks: dict[str, Any] | None,
    conditions: dict[str, Any] | None,
    startup: dict[str, Any] | None,
) -> list[Row]:
    hundred, one = dig(listener, "results", "100"), dig(listener, "results", "1")
    accepted = dig(webhooks, "accepted")
    return [
        (
            "listener: events matched/s, 100 automations per workspace",
            "not run"
            if hundred is None
            else f"{hundred['events_per_s']} events/s ({hundred['decisions_per_s']} decisions/s)",
            "" if one is None else f"1 automation per workspace: {one['events_per_s']} events/s",
            "(no figure set)",
            "—",
        ),
        (
            "webhook intake, 50 senders (accepted/s, p99)",
            "not run"
            if accepted is None
            else f"{accepted.get('per_s')}/s, p99 {dig(accepted, 'latency', 'p99_ms')} ms",
            "",
            "(no figure set)",
            "—",
        ),
        (
            "conditions: evaluations/s, 10 leaves (prepared / raw)",
            "not run"
            if conditions is None
            else f"{dig(conditions, 'evaluate_prepared_tree', 'per_second_median')}/s / "
            f"{dig(conditions, 'evaluate_raw_tree', 'per_second_median')}/s",
            "",
            "(no figure set)",
            "—",
        ),
        (
            "start-up of the embedded services (fresh / existing data dir)",
            "not run"
            if startup is None
            else f"{round(dig(startup, 'cold_data_dir_s', 'median'), 2)} s / "
            f"{round(dig(startup, 'existing_data_dir_s', 'median'), 2)} s",
            "",
            "(no figure set)",
            "—",
        ),
    ]


SECTIONS: list[tuple[str, Callable[..., list[Row]], tuple[str, ...]]] = [
    ("capture", rows_capture, ("capture",)),
    ("capture_logical", rows_capture_logical, ("capture_logical",)),
    ("e2e", rows_e2e, ("e2e", "e2e_logical")),
    ("workers", rows_workers, ("workers",)),
    ("schedule", rows_schedule, ("schedule",)),
    ("embeddings", rows_embeddings, ("embeddings",)),
    ("other", rows_other, ("listener", "webhooks", "conditions", "startup")),
]


def report() -> tuple[dict[str, Any], str]:
    rows: list[Row] = []
    for _, build, names in SECTIONS:
        rows.extend(build(*(load(n) for n in names)))
    loads = {
        name: {
            "start": dig(load(name), "load_average_at_start"),
            "end": dig(load(name), "load_average_at_end"),
        }
        for name in (
            "capture",
            "capture_logical",
            "e2e",
            "e2e_logical",
            "workers",
            "listener",
            "webhooks",
        )
    }
    summary = {"machine": machine(), "load_during_runs": loads, "rows": rows}
    mach = summary["machine"]
    lines = [
        f"Machine: {mach.get('cpu', '?')}, {mach.get('cores')} cores, "
        f"{mach.get('memory_gb', '?')} GB, {mach.get('system')}, Python {mach.get('python')}.",
        "",
        "| figure | haste | anchor, same run | goal | met |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(r)} |" for r in rows),
    ]
    return summary, "\n".join(lines) + "\n"


if __name__ == "__main__":
    summary, markdown = report()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (RESULTS / "summary.md").write_text(markdown)
    print(markdown)
