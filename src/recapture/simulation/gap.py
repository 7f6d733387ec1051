"""recapture's gap report (`GET /admin/report`, contract in docs/report.md) as the harness reads and shows it.

`lift_table` is what `recapture demo` prints: per stage, the abandoners recapture saw, the ones Klaviyo's own
tracking knew (native), the ones only recapture could name, how many reached Klaviyo, and the lift.
`compare` puts the simulation's truth (truth.abandonment_truth) beside the report, per stage, with the
differences, so that anyone can check the report against what really happened (`recapture simulate`;
docs/accuracy.md, "Abandonments: the truth beside the report").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recapture.simulation.truth import ALL_STAGES, StageTruth


@dataclass(frozen=True, slots=True, kw_only=True)
class GapRow:
    """One row of the report (a stage, or all of them): the fields the harness shows."""

    stage: str
    seen: int
    native: int
    recapture_only: int
    delivered: int
    sent: int
    suppressed: Mapping[str, int]
    lift: float | None

    @classmethod
    def of(cls, stage: str, row: Mapping[str, Any]) -> GapRow:
        lift = row.get("lift")
        delivered = int(row["delivered"])
        return cls(stage=stage, seen=int(row["seen"]), native=int(row["native"]),
                   recapture_only=int(row["recapture_only"]), delivered=delivered,
                   sent=int(row.get("sent", delivered)),  # `sent` is beyond the fixed contract: optional
                   suppressed={str(k): int(v) for k, v in (row.get("suppressed") or {}).items()},
                   lift=None if lift is None else float(lift))

    @property
    def abandoned(self) -> int:
        """Seen, less the sessions that ended in an order or a stronger stage."""
        return self.seen - self.suppressed.get("purchased", 0) - self.suppressed.get("stronger_stage", 0)

    @property
    def could_send(self) -> int:
        """Abandoned, not native, consented and reachable: sent, or held back by the cool-down or for want of a
        destination (in `forward` mode: forwarded)."""
        held = sum(self.suppressed.get(reason, 0) for reason in REACHED_BUT_NOT_SENT)
        return self.sent + held


# Outcomes decided after the shopper was found reachable, other than `sent` (docs/abandonment.md).
REACHED_BUT_NOT_SENT = ("cool_down", "no_destination", "forwarded")


def lift_table(report: Mapping[str, Any]) -> list[GapRow]:
    """The report's totals, stage by stage in the report's order, then all stages."""
    totals = report["totals"]
    return [GapRow.of(stage, totals[stage]) for stage in (*report["stages"], ALL_STAGES) if stage in totals]


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One figure as the simulation knows it and as recapture reported it."""

    truth: int
    report: int

    @property
    def difference(self) -> int:
        return self.report - self.truth


@dataclass(frozen=True, slots=True, kw_only=True)
class StageComparison:
    """The truth of one stage beside recapture's report of it."""

    stage: str
    seen: Figure  # sessions whose hold window ended
    abandoned: Figure  # less orders and stronger stages
    native: Figure  # Klaviyo's own tracking knew the shopper
    recapture_only: Figure  # Klaviyo did not, the store's data names the shopper
    could_send: Figure  # abandoned, not native, consented, reachable
    delivered: int  # report only: depends on the destination

    def figures(self) -> dict[str, Figure]:
        return {"seen": self.seen, "abandoned": self.abandoned, "native": self.native,
                "recapture_only": self.recapture_only, "could_send": self.could_send}

    def as_json(self) -> dict[str, Any]:
        figures = self.figures()
        return {
            "stage": self.stage,
            "truth": {name: f.truth for name, f in figures.items()},
            "report": {name: f.report for name, f in figures.items()} | {"delivered": self.delivered},
            "difference": {name: f.difference for name, f in figures.items()},
        }


def compare(truth: Mapping[str, StageTruth], report: Mapping[str, Any]) -> list[StageComparison]:
    """Per stage of the report (and all stages): truth and report side by side."""
    rows = []
    for row in lift_table(report):
        true = truth.get(row.stage)
        if true is None:
            continue
        rows.append(StageComparison(
            stage=row.stage, seen=Figure(truth=true.sessions, report=row.seen),
            abandoned=Figure(truth=true.abandoned, report=row.abandoned),
            native=Figure(truth=true.klaviyo_knew, report=row.native),
            recapture_only=Figure(truth=true.identifiable_missed, report=row.recapture_only),
            could_send=Figure(truth=true.to_send, report=row.could_send), delivered=row.delivered,
        ))
    return rows


# -- rendering -----------------------------------------------------------------------------------------------------


def _lift(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.0%}"


def render_lift_table(rows: Sequence[GapRow], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("stage", "abandoners seen", "Klaviyo native", "recapture only", "delivered", "lift"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in rows:
        table.add_row(row.stage, str(row.seen), str(row.native), str(row.recapture_only), str(row.delivered),
                      _lift(row.lift), style="bold" if row.stage == ALL_STAGES else None)
    return table


COMPARISON_CAPTION = (
    "each cell: the simulation's truth / recapture's report (report - truth). seen: sessions; abandoned: less "
    "orders and stronger stages; native: Klaviyo knew the shopper; recapture only: Klaviyo did not, the store's "
    "data names the shopper; could send: abandoned, not native, marketing allowed, reachable (sent, cool-down or "
    "no destination); delivered: accepted by the destination (report only)"
)


def _figure(figure: Figure) -> str:
    if not figure.difference:
        return f"{figure.truth} = {figure.report}"
    return f"{figure.truth} / {figure.report} ({figure.difference:+d})"


def render_comparison(rows: Sequence[StageComparison], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, caption=COMPARISON_CAPTION)
    for column in ("stage", "seen", "abandoned", "native", "recapture only", "could send", "delivered"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in rows:
        table.add_row(row.stage, *(_figure(f) for f in row.figures().values()), str(row.delivered),
                      style="bold" if row.stage == ALL_STAGES else None)
    return table
