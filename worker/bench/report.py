"""The scenarios' figures side by side: one column per scenario, one row per figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

Cell = Callable[[dict[str, Any]], str | None]

#: The issue's targets, as the table names them.
TARGETS = {
    "single_p99_under_1s": "p99 < 1 s",
    "each_tenant_95pct_of_limit": "each >= 95% of limit",
    "shares_within_10pct": "shares within 10%",
    "throttled_at_most_1pct": "429s <= 1%",
    "requests_per_s_at_least_350": ">= 350 requests/s",
    "cpu_ms_per_request_at_most_2_5": "<= 2.5 CPU ms/request",
    "peak_rss_at_most_150mb": "<= 150 MB RSS/process",
}


def _num(key: str, unit: str = "", digits: int = 2) -> Cell:
    def cell(result: dict[str, Any]) -> str | None:
        value = result.get(key)
        if key not in result:
            return None
        return "-" if value is None else f"{value:,.{digits}f}{unit}"

    return cell


def _int(key: str) -> Cell:
    def cell(result: dict[str, Any]) -> str | None:
        return None if key not in result else f"{result[key]:,}"

    return cell


def _state(result: dict[str, Any]) -> str:
    if result.get("error") and "job_states" not in result:
        return f"[red]error: {result['error']}[/red]"
    states = ", ".join(f"{n} {state}" for state, n in sorted(result.get("job_states", {}).items()))
    return states if result.get("completed") else f"[red]{result.get('error') or states}[/red]"


def _throttled(result: dict[str, Any]) -> str | None:
    if "throttled_429" not in result:
        return None
    return f"{result['throttled_429']:,} ({result['throttled_pct']:.2f}%)"


def _range(low: str, high: str, unit: str = "") -> Cell:
    def cell(result: dict[str, Any]) -> str | None:
        if low not in result:
            return None if "per_tenant" not in result else "-"
        return f"{result[low]:g}{unit} - {result[high]:g}{unit}"

    return cell


def _per_tenant_rate(result: dict[str, Any]) -> str | None:
    if "per_tenant" not in result:
        return None
    rates = [t["recipients_per_s"] for t in result["per_tenant"] if "recipients_per_s" in t]
    return f"{min(rates):g} - {max(rates):g}" if rates else "no overlap"


def _app_rate(result: dict[str, Any]) -> str | None:
    if "app_requests_per_s" not in result:
        return None
    rate, pct = result["app_requests_per_s"], result["app_pct_of_limit"]
    return "-" if rate is None else f"{rate:g}/s ({pct:g}%)"


def _singles(result: dict[str, Any]) -> str | None:
    if "singles_delivered" not in result:
        return None
    return f"{result['singles_delivered']} of {result['setup']['single_sends']}"


def _targets(result: dict[str, Any]) -> str | None:
    targets: dict[str, bool] | None = result.get("targets")
    if not targets:
        return None
    missed = [TARGETS.get(name, name) for name, met in targets.items() if not met]
    return "[green]met[/green]" if not missed else "[yellow]missed:\n" + "\n".join(missed) + "[/yellow]"


def _rate(key: str) -> Cell:
    def cell(result: dict[str, Any]) -> str | None:
        if key not in result:
            return None
        value, of = result[key], result.get("rate_of", "all")
        return "-" if value is None else f"{value:,.1f}" + ("" if of == "all" else f" ({of})")

    return cell


def _pct_of_limit(result: dict[str, Any]) -> str | None:
    if "limit_requests_per_s" not in result:
        return None
    limit, pct = result["limit_requests_per_s"], result["pct_of_limit"]
    if limit is None:
        return "no limit"
    return f"{'-' if pct is None else f'{pct:g}%'} of {limit:g}/s"


def _per_process_rss(result: dict[str, Any]) -> str | None:
    processes: list[dict[str, Any]] | None = result.get("worker_processes")
    if processes is None:
        return None
    return "\n".join(
        f"{p['node'].split('@')[0]}{'' if p['role'] == 'worker' else ' pool'} {p['peak_rss_mb']:g}" for p in processes
    )


def _ok(result: dict[str, Any]) -> str:
    return "[green]ok[/green]" if result.get("ok") else "[red]FAILED[/red]"


ROWS: list[tuple[str, Cell]] = [
    ("jobs", _state),
    ("jobs ended after (s)", _num("seconds", digits=1)),
    ("singles reaching Graph", _singles),
    ("requests/s at Graph (first to last)", _rate("requests_per_s")),
    ("recipients/s", _rate("recipients_per_s")),
    ("requests/s from the enqueue", _rate("requests_per_s_from_enqueue")),
    ("% of the limit", _pct_of_limit),
    ("first request after enqueue (s)", _num("first_request_after_s", digits=3)),
    ("p50 job created->Graph (s)", _num("enqueue_to_graph_p50_s", digits=3)),
    ("p99 job created->Graph (s)", _num("enqueue_to_graph_p99_s", digits=3)),
    ("worker CPU (s)", _num("worker_cpu_s")),
    ("worker CPU ms / Graph request", _num("worker_cpu_ms_per_request", digits=3)),
    ("peak RSS, largest process (MB)", _num("worker_peak_rss_mb", digits=1)),
    ("peak RSS per process (MB)", _per_process_rss),
    ("single p50 enqueue->Graph (s)", _num("single_p50_s", digits=3)),
    ("single p99 enqueue->Graph (s)", _num("single_p99_s", digits=3)),
    ("single max enqueue->Graph (s)", _num("single_max_s", digits=3)),
    ("app-wide bulk rate, whole run", _app_rate),
    ("window all tenants active (s)", _num("window_s", digits=1)),
    ("per tenant recipients/s", _per_tenant_rate),
    ("% of tenant bulk limit", _range("min_pct_of_limit", "max_pct_of_limit", "%")),
    ("share of app-wide rate", _range("min_share_pct", "max_share_pct", "%")),
    ("worst share vs fair share", _num("share_deviation_pct", "%", 1)),
    ("struck after request", _int("disrupted_at_request")),
    ("accepted while Redis down", _int("accepted_while_down")),
    ("requests left after event", _int("remaining_requests")),
    ("paced minimum for them (s)", _num("paced_min_s", digits=1)),
    ("job ended after event (s)", _num("ended_after_event_s", digits=1)),
    ("recovery (s)", _num("recovery_s", digits=1)),
    ("workers alive at end", _int("workers_alive")),
    ("1M-recipient enqueue (s)", _num("enqueue_s")),
    ("Redis bytes a recipient", _num("redis_bytes_per_recipient", digits=1)),
    ("longest Redis stall (ms)", _num("longest_redis_stall_ms", digits=1)),
    ("notify_user enqueues/s", _int("single_enqueues_per_s")),
    ("producer peak RSS (MB)", _num("producer_peak_rss_mb", digits=1)),
    ("producer RSS, 1M listed (MB)", _num("producer_recipients_listed_rss_mb", digits=1)),
    ("Graph answers", _int("responses_total")),
    ("429s (% of answers)", _throttled),
    ("lost", _int("lost")),
    ("duplicated", _int("duplicated")),
    ("issue targets", _targets),
    ("scenario wall time (s)", _num("wall_s", digits=0)),
    ("result", _ok),
]


def scenario_table(report: dict[str, Any]) -> Table:
    """The table of every scenario run, rows without a figure in any scenario left out."""
    results: dict[str, dict[str, Any]] = report["scenarios"]
    table = Table(title="teams-notify bench: one column a scenario")
    table.add_column("figure")
    for name in results:
        table.add_column(name, justify="right")
    for label, cell in ROWS:
        cells = [cell(result) for result in results.values()]
        if any(value is not None for value in cells):
            table.add_row(label, *(value or "" for value in cells))
    return table


PEER_COLUMNS: list[tuple[str, str]] = [
    ("client", "client"),
    ("delivered", "delivered"),
    ("lost", "lost"),
    ("429s", "throttled_429"),
    ("token requests", "token_requests"),
    ("time (s)", "seconds"),
]


def peer_table(peer: dict[str, Any]) -> Table:
    """teams-notify and the msgraph-sdk peer, one row each, on the same workload."""
    table = Table(title="teams-notify bench --peer msgraph-sdk: the same job, two clients")
    for label, _ in PEER_COLUMNS:
        table.add_column(label, justify="left" if label == "client" else "right")
    for row in peer.get("rows", []):
        table.add_row(*(_peer_cell(row.get(key)) for _, key in PEER_COLUMNS))
    return table


def _peer_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_report(report: dict[str, Any], console: Console | None = None) -> None:
    """Prints the scenarios' table (and the peer's, when run), the chart's path and where the logs are."""
    console = console or Console()
    tables = ([scenario_table(report)] if report.get("scenarios") else []) + (
        [peer_table(report["peer"])] if report.get("peer") else []
    )
    for table in tables:
        needed = console.measure(table, options=console.options.update_width(1000)).maximum
        if not console.is_terminal and needed > console.width:  # a file or pipe: never wrap the figures
            console = Console(width=needed)
        console.print(table)
    if report.get("plot"):
        console.print(f"chart: {report['plot']}")
    if report.get("plot_error"):
        console.print(f"[yellow]{report['plot_error']}[/yellow]")
    if report.get("workdir"):
        console.print(f"logs: {report['workdir']}")
