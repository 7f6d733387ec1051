"""Charts as inline SVG, drawn on the server: no chart library, nothing fetched, readable without JavaScript.

Every chart has a title and description for screen readers, axis labels, a legend, and a `<title>` per mark (a
native tooltip with the exact value). Colours are presentation attributes, so a chart looks the same wherever its
markup ends up. Text is escaped here: labels come from data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count

from markupsafe import Markup, escape

# Colour-blind-safe (Okabe-Ito), in the order series are drawn.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00")
AXIS = "#6b7280"
GRID = "#e5e7eb"
FONT_SIZE = 13
# Average glyph width of a sans-serif font, as a fraction of its size: enough to lay out legends and labels.
GLYPH_WIDTH = 0.6
_ids = count(1)


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    values: Sequence[float | None]
    # A colour of its own keeps a meaning (a stage, "native") recognisable across charts; else the palette's.
    colour: str | None = None


def _colours(series: Sequence[Series]) -> list[str]:
    """Each series' colour, escaped like every other value that lands in an attribute."""
    return [str(escape(s.colour or PALETTE[i % len(PALETTE)])) for i, s in enumerate(series)]


@dataclass(frozen=True, slots=True)
class Box:
    """The plotting area inside the margins."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top


def text_width(text: str, size: float = FONT_SIZE) -> float:
    return len(text) * size * GLYPH_WIDTH


def nice_ticks(maximum: float, steps: int = 4) -> list[float]:
    """0 and round steps (1, 2, 2.5 or 5 times a power of ten) up to at least `maximum`."""
    if maximum <= 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw = maximum / steps
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    top = math.ceil(maximum / step - 1e-9) * step
    return [round(i * step, 10) for i in range(round(top / step) + 1)]


def format_number(value: float, unit: str = "") -> str:
    if unit == "%":
        return f"{value:.0f}%" if abs(value) >= 10 or value == int(value) else f"{value:.1f}%"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.1f}"


def label_stride(labels: Sequence[str], room: float) -> int:
    """Show every n-th x label so that the shown ones never overlap."""
    if not labels:
        return 1
    widest = max(text_width(label) for label in labels) + 8
    return max(1, math.ceil(widest * len(labels) / max(room, 1.0)))


def _svg(width: int, height: int, title: str, description: str, body: list[str], css_class: str) -> Markup:
    ident = f"chart-{next(_ids)}"
    head = (
        f'<svg class="chart {escape(css_class)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{ident}-t {ident}-d" font-family="system-ui, sans-serif" font-size="{FONT_SIZE}" '
        f'xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(description)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every interpolated text was escaped above


def _text(x: float, y: float, content: str, *, anchor: str = "start", fill: str = AXIS, weight: str = "") -> str:
    bold = ' font-weight="600"' if weight else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}"{bold}>'
            f"{escape(content)}</text>")


def _legend(series: Sequence[Series], left: float, top: float, room: float) -> tuple[list[str], float]:
    """Legend entries laid out in rows within `room`; returns the markup and the height it takes."""
    parts: list[str] = []
    x, y = left, top
    for line, colour in zip(series, _colours(series), strict=True):
        name = line.name
        entry = 18 + text_width(name) + 16
        if x > left and x + entry > left + room:
            x, y = left, y + 20
        parts.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" rx="2" fill="{colour}"/>')
        parts.append(_text(x + 18, y, name, fill="#111827"))
        x += entry
    return parts, (y - top) + 20 if series else 0


def _y_axis(box: Box, ticks: Sequence[float], unit: str, label: str) -> list[str]:
    parts: list[str] = []
    for tick in ticks:
        y = box.bottom - (tick / ticks[-1]) * box.height
        parts.append(f'<line x1="{box.left:.1f}" x2="{box.right:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(_text(box.left - 6, y + 4, format_number(tick, unit), anchor="end"))
    parts.append(f'<line x1="{box.left:.1f}" x2="{box.left:.1f}" y1="{box.top:.1f}" y2="{box.bottom:.1f}" '
                 f'stroke="{AXIS}"/>')
    if label:
        middle = box.top + box.height / 2
        parts.append(f'<text transform="translate(14 {middle:.1f}) rotate(-90)" text-anchor="middle" '
                     f'fill="{AXIS}">{escape(label)}</text>')
    return parts


def _x_axis(box: Box, categories: Sequence[str], centre_of: list[float], label: str) -> list[str]:
    parts = [f'<line x1="{box.left:.1f}" x2="{box.right:.1f}" y1="{box.bottom:.1f}" y2="{box.bottom:.1f}" '
             f'stroke="{AXIS}"/>']
    stride = label_stride(categories, box.width)
    for index, category in enumerate(categories):
        if index % stride == 0:
            parts.append(_text(centre_of[index], box.bottom + 18, category, anchor="middle"))
    if label:
        parts.append(_text(box.left + box.width / 2, box.bottom + 38, label, anchor="middle"))
    return parts


def _layout(
    width: int, height: int, series: Sequence[Series], ticks: Sequence[float], unit: str, overhang: float = 0.0,
) -> tuple[Box, list[str]]:
    """The plotting box and the legend above it; `overhang`: how far the last x label reaches past the box."""
    widest_tick = max(text_width(format_number(t, unit)) for t in ticks)
    left = 30 + widest_tick
    legend, legend_height = _legend(series, left, 16, width - left - 10)
    right = width - max(12.0, overhang + 4)
    return Box(left=left, top=16 + legend_height + 4, right=right, bottom=height - 46), legend


def _empty(width: int, height: int, title: str, message: str, css_class: str) -> Markup:
    body = [_text(width / 2, height / 2, message, anchor="middle")]
    return _svg(width, height, title, message, body, css_class)


def line_chart(
    categories: Sequence[str], series: Sequence[Series], *, title: str, y_label: str = "", x_label: str = "",
    unit: str = "", width: int = 640, height: int = 280, css_class: str = "",
) -> Markup:
    """One line per series over the categories; a missing value (None) breaks the line, a lone point is a dot."""
    values = [v for s in series for v in s.values if v is not None]
    if not categories or not values:
        return _empty(width, height, title, "no data in this period", css_class)
    ticks = nice_ticks(max(max(values), 0.0))
    # The last point sits on the right edge, and its label is centred on it.
    box, body = _layout(width, height, series, ticks, unit, overhang=text_width(categories[-1]) / 2)
    step = box.width / max(len(categories) - 1, 1)
    xs = [box.left + (i * step if len(categories) > 1 else box.width / 2) for i in range(len(categories))]
    body += _y_axis(box, ticks, unit, y_label) + _x_axis(box, categories, xs, x_label)
    for line, colour in zip(series, _colours(series), strict=True):
        points = [(xs[i], box.bottom - (max(v, 0.0) / ticks[-1]) * box.height, v)
                  for i, v in enumerate(line.values[: len(categories)]) if v is not None]
        body += _polyline(line.values[: len(categories)], xs, box, ticks[-1], colour)
        for (x, y, value), category in zip(points, _present(categories, line.values), strict=True):
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                        f"<title>{escape(f'{line.name}, {category}: {format_number(value, unit)}')}</title></circle>")
    return _svg(width, height, title, _describe(categories, series, unit), body, css_class)


def _present(categories: Sequence[str], values: Sequence[float | None]) -> list[str]:
    return [c for c, v in zip(categories, values, strict=False) if v is not None]


def _polyline(values: Sequence[float | None], xs: Sequence[float], box: Box, top: float, colour: str) -> list[str]:
    """Path segments between consecutive known values."""
    commands: list[str] = []
    pen_down = False
    for x, value in zip(xs, values, strict=False):
        if value is None:
            pen_down = False
            continue
        y = box.bottom - (max(value, 0.0) / top) * box.height
        commands.append(f"{'L' if pen_down else 'M'}{x:.1f} {y:.1f}")
        pen_down = True
    if not commands:
        return []
    return [f'<path d="{" ".join(commands)}" fill="none" stroke="{colour}" stroke-width="2.5" '
            f'stroke-linejoin="round" stroke-linecap="round"/>']


def stacked_bar_chart(
    categories: Sequence[str], series: Sequence[Series], *, title: str, y_label: str = "", x_label: str = "",
    unit: str = "", width: int = 640, height: int = 280, css_class: str = "",
) -> Markup:
    """One bar per category, the series stacked in order (missing values count as 0)."""
    totals = [sum(s.values[i] or 0.0 for s in series) for i in range(len(categories))]
    if not categories or not any(totals):
        return _empty(width, height, title, "no data in this period", css_class)
    ticks = nice_ticks(max(totals))
    box, body = _layout(width, height, series, ticks, unit)
    slot = box.width / len(categories)
    bar = max(min(slot * 0.7, 48.0), 1.0)
    centres = [box.left + slot * (i + 0.5) for i in range(len(categories))]
    body += _y_axis(box, ticks, unit, y_label) + _x_axis(box, categories, centres, x_label)
    for i, category in enumerate(categories):
        base = box.bottom
        for stack, colour in zip(series, _colours(series), strict=True):
            value = stack.values[i] if i < len(stack.values) else None
            if not value:
                continue
            height_px = (value / ticks[-1]) * box.height
            base -= height_px
            tip = f"{stack.name}, {category}: {format_number(value, unit)}"
            body.append(f'<rect x="{centres[i] - bar / 2:.1f}" y="{base:.1f}" width="{bar:.1f}" '
                        f'height="{height_px:.1f}" fill="{colour}">'
                        f"<title>{escape(tip)}</title></rect>")
    return _svg(width, height, title, _describe(categories, series, unit), body, css_class)


def funnel_chart(
    steps: Sequence[tuple[str, int]], *, title: str, width: int = 640, css_class: str = "",
) -> Markup:
    """Horizontal bars, one per step, each labelled above with its value and its share of the first step."""
    row = 50
    height = 12 + row * len(steps)
    if not steps:
        return _empty(width, 80, title, "no data in this period", css_class)
    first = steps[0][1]
    widest = max((value for _, value in steps), default=0) or 1
    room = width - 8
    body: list[str] = []
    for index, (label, value) in enumerate(steps):
        top = 8 + index * row
        share = f" · {value / first:.0%}" if first and index else ""
        body.append(_text(4, top + 14, label, fill="#111827"))
        body.append(_text(width - 4, top + 14, f"{format_number(value)}{share}", anchor="end", fill="#111827",
                          weight="bold"))
        body.append(f'<rect x="4" y="{top + 22:.1f}" width="{room:.1f}" height="18" rx="3" fill="{GRID}"/>')
        bar = room * value / widest
        if bar > 0:
            body.append(f'<rect x="4" y="{top + 22:.1f}" width="{max(bar, 3.0):.1f}" height="18" rx="3" '
                        f'fill="{PALETTE[index % len(PALETTE)]}"><title>{escape(f"{label}: {value:,}")}</title></rect>')
    description = "; ".join(f"{label}: {value:,}" for label, value in steps)
    return _svg(width, height, title, description, body, css_class)


def _describe(categories: Sequence[str], series: Sequence[Series], unit: str) -> str:
    """The chart's data in words, for screen readers."""
    parts = []
    for line in series:
        pairs = zip(categories, line.values, strict=False)
        known = [f"{c} {format_number(v, unit)}" for c, v in pairs if v is not None]
        parts.append(f"{line.name}: {', '.join(known) if known else 'no data'}")
    return "; ".join(parts)
