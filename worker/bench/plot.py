"""The chart of `teams-notify bench --scenario ...`: requests a second at Graph (1 s buckets of the
simulator's records, from the enqueue) against the limit, one panel per scenario, as a PNG.

matplotlib (the bench extra) is imported here only, and drawn with Agg, without pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Inches: the chart's width, and the height of one panel.
WIDTH, PANEL_HEIGHT = 9.0, 2.4
DPI = 100


@dataclass(frozen=True)
class Panel:
    """One scenario's series: requests in each second, the limit (None: unthrottled), what was counted."""

    name: str
    per_second: Sequence[int]
    limit: float | None
    rate_of: str = "all"
    requests_per_s: float | None = None
    pct_of_limit: float | None = None

    @property
    def title(self) -> str:
        """The scenario, and its rate against the limit."""
        rate = "" if self.requests_per_s is None else f": {self.requests_per_s:g} requests/s"
        pct = " (unthrottled)" if not self.limit else ""
        if self.limit and self.pct_of_limit is not None:
            pct = f" ({self.pct_of_limit:g}% of the {self.limit:g}/s limit)"
        return f"{self.name}{rate}{pct}"


def panels(results: Mapping[str, Mapping[str, Any]]) -> list[Panel]:
    """A panel for each scenario whose requests reached Graph (not the producers' `enqueue`)."""
    return [
        Panel(
            name,
            result["throughput_per_s"],
            result.get("limit_requests_per_s"),
            result.get("rate_of", "all"),
            result.get("requests_per_s"),
            result.get("pct_of_limit"),
        )
        for name, result in results.items()
        if result.get("throughput_per_s")
    ]


def render(drawn: Sequence[Panel]) -> Figure:
    """The figure: one panel a scenario, stacked, each with its own scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - the bench extra's
    from matplotlib.figure import Figure  # noqa: PLC0415

    if not drawn:
        raise ValueError("nothing to draw: no scenario sent requests to Graph")
    figure = Figure(figsize=(WIDTH, PANEL_HEIGHT * len(drawn)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(drawn), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, drawn, strict=True):
        edges = list(range(len(panel.per_second) + 1))
        label = "requests/s" if panel.rate_of == "all" else f"{panel.rate_of} requests/s"
        ax.stairs(panel.per_second, edges, fill=True, alpha=0.25, color="tab:blue")
        ax.stairs(panel.per_second, edges, label=label, color="tab:blue")
        if panel.limit:
            ax.axhline(panel.limit, color="tab:red", linestyle="--", label=f"limit {panel.limit:g}/s")
        ax.set_title(panel.title, loc="left", fontsize=10)
        ax.set_ylabel(label)
        ax.set_xlim(0, max(1, len(panel.per_second)))
        ax.set_ylim(0, 1.2 * max(*panel.per_second, panel.limit or 0, 1))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xlabel("seconds from the enqueue (1 s buckets of the requests Graph received)")
    return figure


def write_plot(path: Path, drawn: Sequence[Panel]) -> Path:
    """Writes the PNG (its folder made if needed); returns its absolute path."""
    figure = render(drawn)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path.resolve()
