"""Inline SVG charts for the report: interval bars, radar, strip/density, heat map, scatter, ranges."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from capeval.formatting import plain_number

# Colour-blind-safe palette (Okabe-Ito); series past its length cycle.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _attr(s: str) -> str:
    return escape(s, {'"': "&quot;"})


def _svg(width: float, height: float, body: list[str], kind: str, title: str) -> str:
    """Wrap chart elements in an <svg> with the title drawn above them (and as <title>)."""
    head = 24  # the visible title row; the chart body is shifted below it
    h = height + head
    width = max(width, 7.2 * len(title) + 20)  # never clip the title
    # role/aria-label make each chart findable by the browser test and by screen readers.
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" role="img" '
        f'aria-label="{_attr(title)}" width="{width:.0f}" height="{h:.0f}" '
        f'viewBox="0 0 {width:.0f} {h:.0f}" {FONT}><title>{escape(title)}</title>'
        f'<text class="chart-title" x="10" y="17" font-size="13" font-weight="600">{escape(title)}</text>'
        f'<g transform="translate(0,{head})">' + "".join(body) + "</g></svg>"
    )


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    first = math.ceil(lo / step) * step
    out = []
    v = first
    while v <= hi + 1e-9 * step:
        out.append(round(v, 10))
        v += step
    return out


@dataclass(frozen=True)
class Interval:
    """One row of an interval chart: a label, a point estimate and its 95% CI."""

    label: str
    value: float
    low: float
    high: float
    href: str | None = None  # where the label links inside the report


# Charts with one labelled row per item on a shared horizontal value axis (interval, range).
ROW_LABEL_W, ROW_H, ROW_TOP, ROW_BOTTOM = 200, 26, 10, 30


class _Scale:
    """Value -> x pixel on a row chart's axis, clamped to its domain."""

    def __init__(self, domain: tuple[float, float], width: int) -> None:
        self.domain = domain
        self.plot_w = width - ROW_LABEL_W - 20

    def __call__(self, v: float) -> float:
        d0, d1 = self.domain
        return ROW_LABEL_W + (min(max(v, d0), d1) - d0) / ((d1 - d0) or 1.0) * self.plot_w


def _row_axis(
    values: Sequence[float], n_rows: int, domain: tuple[float, float] | None, unit: str, width: int
) -> tuple[_Scale, list[str], int]:
    """(scale, body with the grid lines and tick labels, height) of a row chart: the domain is
    the values' range padded by 8% unless given."""
    height = ROW_TOP + ROW_H * max(1, n_rows) + ROW_BOTTOM
    if domain is None:
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        pad = (hi - lo) * 0.08 or 1.0
        domain = (lo - pad, hi + pad)
    x = _Scale(domain, width)
    body: list[str] = []
    for t in _ticks(*domain):
        body.append(f'<line x1="{x(t):.1f}" y1="{ROW_TOP}" x2="{x(t):.1f}" y2="{height - ROW_BOTTOM}" stroke="#ddd"/>')
        body.append(f'<text x="{x(t):.1f}" y="{height - ROW_BOTTOM + 16}" text-anchor="middle" fill="#555">{plain_number(t, 3)}{escape(unit)}</text>')
    return x, body, height


def interval_chart(
    rows: Sequence[Interval],
    title: str,
    domain: tuple[float, float] | None = None,
    bars: bool = True,
    unit: str = "",
    width: int = 640,
) -> str:
    """Horizontal bars (or dots, `bars=False`, for ratings with no natural zero) with CI whiskers."""
    finite = [x for r in rows for x in (r.value, r.low, r.high) if math.isfinite(x)]
    x, body, height = _row_axis(finite, len(rows), domain, unit, width)
    d0, d1 = x.domain
    for i, r in enumerate(rows):
        y = ROW_TOP + i * ROW_H + ROW_H / 2
        label = escape(r.label if len(r.label) <= 30 else r.label[:29] + "…")
        text = f'<text x="{ROW_LABEL_W - 8}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
        body.append(f'<a href="{_attr(r.href)}">{text}</a>' if r.href else text)
        if not math.isfinite(r.value):
            continue
        c = colour(i) if not bars else PALETTE[0]
        if bars:
            x0 = x(max(d0, 0.0)) if d0 <= 0 <= d1 else x(d0)
            body.append(
                f'<rect class="bar" x="{min(x0, x(r.value)):.1f}" y="{y - 8:.1f}" width="{abs(x(r.value) - x0):.1f}" '
                f'height="16" fill="{c}" fill-opacity="0.75"/>'
            )
        if math.isfinite(r.low) and math.isfinite(r.high):
            body.append(
                f'<g class="whisker" stroke="#222"><line x1="{x(r.low):.1f}" y1="{y:.1f}" x2="{x(r.high):.1f}" y2="{y:.1f}"/>'
                f'<line x1="{x(r.low):.1f}" y1="{y - 5:.1f}" x2="{x(r.low):.1f}" y2="{y + 5:.1f}"/>'
                f'<line x1="{x(r.high):.1f}" y1="{y - 5:.1f}" x2="{x(r.high):.1f}" y2="{y + 5:.1f}"/></g>'
            )
        if not bars:
            body.append(f'<circle class="point" cx="{x(r.value):.1f}" cy="{y:.1f}" r="4.5" fill="{c}"/>')
    return _svg(width, height, body, "interval", title)


def radar_chart(axes: Sequence[str], series: Mapping[str, Sequence[float]], title: str, maximum: float = 100.0, size: int = 420) -> str:
    """One closed polygon per series over `axes` (values on 0..maximum; NaN is drawn at 0)."""
    side, top_pad = 150, 34  # room for axis labels such as "Image Recognition & Reasoning"
    radius = size / 2 - 20
    cx, cy = side + size / 2, top_pad + size / 2
    n = len(axes)
    width = size + 2 * side
    legend_top = top_pad + size + 10
    height = legend_top + 18 * len(series) + 6

    def point(i: int, v: float) -> tuple[float, float]:
        a = -math.pi / 2 + 2 * math.pi * i / n
        r = radius * (min(max(v, 0.0), maximum) / maximum if math.isfinite(v) else 0.0)
        return cx + r * math.cos(a), cy + r * math.sin(a)

    body: list[str] = []
    for frac in (0.25, 0.5, 0.75, 1.0):
        ring = " ".join(f"{px:.1f},{py:.1f}" for px, py in (point(i, frac * maximum) for i in range(n)))
        body.append(f'<polygon points="{ring}" fill="none" stroke="#ddd"/>')
        body.append(f'<text x="{cx + 4:.1f}" y="{cy - radius * frac + 12:.1f}" fill="#999" font-size="9">{plain_number(frac * maximum, 3)}</text>')
    for i, name in enumerate(axes):
        ex, ey = point(i, maximum)
        body.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{ex:.1f}" y2="{ey:.1f}" stroke="#ccc"/>')
        a = -math.pi / 2 + 2 * math.pi * i / n
        lx, ly = cx + radius * 1.07 * math.cos(a), cy + radius * 1.07 * math.sin(a)
        anchor = "middle" if abs(lx - cx) < 5 else ("start" if lx > cx else "end")
        body.append(f'<text x="{lx:.1f}" y="{ly + 4:.1f}" text-anchor="{anchor}">{escape(name)}</text>')
    for k, (name, values) in enumerate(series.items()):
        pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in (point(i, v) for i, v in enumerate(values)))
        c = colour(k)
        body.append(
            f'<polygon class="radar-series" data-series="{_attr(name)}" points="{pts}" fill="{c}" '
            f'fill-opacity="0.15" stroke="{c}" stroke-width="2"/>'
        )
        ly = legend_top + 18 * k
        body.append(f'<rect x="{side}" y="{ly:.1f}" width="12" height="12" fill="{c}"/>')
        body.append(f'<text x="{side + 18}" y="{ly + 10:.1f}">{escape(name)}</text>')
    return _svg(width, height, body, "radar", title)


def _kde(xs: Sequence[float], grid: Sequence[float]) -> list[float]:
    """Gaussian kernel density with Silverman's bandwidth (no scipy needed for a picture)."""
    n = len(xs)
    mean = sum(xs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in xs) / max(1, n - 1)) or 0.25
    h = 1.06 * sd * n ** (-0.2)
    norm = 1 / (n * h * math.sqrt(2 * math.pi))
    return [norm * sum(math.exp(-0.5 * ((g - v) / h) ** 2) for v in xs) for g in grid]


@dataclass(frozen=True)
class StripPoint:
    """One case on a strip plot: its position, its series (model) and a label for the tooltip."""

    value: float
    series: str
    label: str


def strip_density_chart(
    points: Sequence[StripPoint],
    title: str,
    domain: tuple[float, float],
    bands: Sequence[tuple[float, float, str]] = (),
    markers: Sequence[tuple[float, str]] = (),
    width: int = 640,
) -> str:
    """A density curve over jittered points, with shaded labelled bands and vertical markers.

    Points outside `domain` are drawn at its edge so none disappear."""
    left, right, top, dens_h, strip_h, bottom = 30, 20, 38, 120, 70, 40
    height = top + dens_h + strip_h + bottom
    d0, d1 = domain
    plot_w = width - left - right

    def x(v: float) -> float:
        return left + (min(max(v, d0), d1) - d0) / (d1 - d0) * plot_w

    body: list[str] = []
    band_fill = ("#fbe3e3", "#fdf0dc", "#e6f2e6", "#e3edf9")
    for i, (b0, b1, label) in enumerate(bands):
        body.append(f'<rect x="{x(b0):.1f}" y="{top}" width="{x(b1) - x(b0):.1f}" height="{dens_h + strip_h}" fill="{band_fill[i % 4]}"/>')
        # alternate two rows so labels of narrow neighbouring bands do not overlap
        body.append(f'<text x="{(x(b0) + x(b1)) / 2:.1f}" y="{top - 6 - 13 * (i % 2)}" text-anchor="middle" font-size="11" fill="#444">{escape(label)}</text>')
    for v, label in markers:
        body.append(f'<line x1="{x(v):.1f}" y1="{top}" x2="{x(v):.1f}" y2="{top + dens_h + strip_h}" stroke="#333" stroke-dasharray="4 3"/>')
        body.append(f'<text x="{x(v):.1f}" y="{height - bottom + 30}" text-anchor="middle" fill="#333">{escape(label)}</text>')
    for t in _ticks(d0, d1):
        body.append(f'<text x="{x(t):.1f}" y="{height - bottom + 14}" text-anchor="middle" fill="#555" font-size="10">{plain_number(t, 3)}</text>')
    vals = [min(max(p.value, d0), d1) for p in points if math.isfinite(p.value)]
    if len(vals) >= 2:
        grid = [d0 + (d1 - d0) * i / 200 for i in range(201)]
        dens = _kde(vals, grid)
        peak = max(dens) or 1.0
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(g):.1f},{top + dens_h - d / peak * (dens_h - 6):.1f}" for i, (g, d) in enumerate(zip(grid, dens)))
        body.append(f'<path class="density" d="{path}" fill="none" stroke="#333" stroke-width="2"/>')
    names = list(dict.fromkeys(p.series for p in points))
    for i, p in enumerate(points):
        if not math.isfinite(p.value):
            continue
        # Deterministic jitter (golden-ratio sequence) so the picture is the same on every render.
        jitter = ((i * 0.618034) % 1.0) * (strip_h - 20) + 10
        c = colour(names.index(p.series))
        body.append(
            f'<circle class="strip-point" cx="{x(p.value):.1f}" cy="{top + dens_h + jitter:.1f}" r="4" fill="{c}" '
            f'fill-opacity="0.8"><title>{escape(p.series)}: {escape(p.label)}</title></circle>'
        )
    lx, ly = float(left), height + 4
    for k, name in enumerate(names):
        w = 22 + 6.5 * len(name[:40])
        if lx + w > width and lx > left:
            lx, ly = float(left), ly + 16
        body.append(f'<circle cx="{lx + 5:.1f}" cy="{ly - 4:.1f}" r="4" fill="{colour(k)}"/>')
        body.append(f'<text x="{lx + 13:.1f}" y="{ly:.1f}" font-size="11">{escape(name[:40])}</text>')
        lx += w
    return _svg(width, ly + 8, body, "strip", title)


def heatmap_chart(labels: Sequence[str], matrix: Sequence[Sequence[float]], title: str, cell: int = 46) -> str:
    """Row-vs-column win rates (0..1) as coloured cells with their value; NaN cells stay blank."""
    label_w, top = 170, 100
    n = len(labels)
    width = label_w + cell * n + 80
    height = top + cell * n + 10
    body: list[str] = []
    for j, name in enumerate(labels):
        tx = label_w + j * cell + cell / 2
        body.append(f'<text transform="translate({tx:.1f},{top - 6}) rotate(-45)" font-size="11">{escape(name[:24])}</text>')
    for i, name in enumerate(labels):
        y = top + i * cell
        body.append(f'<text x="{label_w - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end" font-size="11">{escape(name[:24])}</text>')
        for j in range(n):
            v = matrix[i][j]
            xx = label_w + j * cell
            if not math.isfinite(v):
                body.append(f'<rect x="{xx}" y="{y}" width="{cell}" height="{cell}" fill="#f4f4f4" stroke="#fff"/>')
                continue
            # Diverging blue (row wins) / orange (row loses) around 0.5.
            t = min(max(v, 0.0), 1.0)
            if t >= 0.5:
                a = (t - 0.5) * 2
                fill = f"rgb({int(255 - a * 255)},{int(255 - a * 141)},{int(255 - a * 77)})"
            else:
                a = (0.5 - t) * 2
                fill = f"rgb({int(255 - a * 25)},{int(255 - a * 96)},{int(255 - a * 255)})"
            body.append(f'<rect class="cell" x="{xx}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff"/>')
            body.append(f'<text x="{xx + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" font-size="11">{v:.2f}</text>')
    return _svg(width, height, body, "heatmap", title)


def scatter_chart(
    xs: Sequence[float], ys: Sequence[float], title: str, x_label: str, y_label: str, width: int = 420, height: int = 360
) -> str:
    """Paired values (judge vs human) as points with a least-squares line."""
    left, bottom, top, right = 50, 40, 10, 10
    pts = [(a, b) for a, b in zip(xs, ys) if math.isfinite(a) and math.isfinite(b)]
    x0, x1 = (min(a for a, _ in pts), max(a for a, _ in pts)) if pts else (0.0, 1.0)
    y0, y1 = (min(b for _, b in pts), max(b for _, b in pts)) if pts else (0.0, 1.0)
    # a margin so points on the extremes (ratings of 1 and 5) are not cut by the frame
    mx_, my_ = max((x1 - x0) * 0.05, 0.25), max((y1 - y0) * 0.05, 0.05)
    x0, x1, y0, y1 = x0 - mx_, x1 + mx_, y0 - my_, y1 + my_

    def px(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * (width - left - right)

    def py(v: float) -> float:
        return height - bottom - (v - y0) / (y1 - y0) * (height - top - bottom)

    body = [
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - right}" y2="{height - bottom}" stroke="#333"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="#333"/>',
        f'<text x="{(width + left) / 2:.0f}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>',
        f'<text transform="translate(14,{(height - bottom) / 2:.0f}) rotate(-90)" text-anchor="middle">{escape(y_label)}</text>',
    ]
    for t in _ticks(x0, x1):
        body.append(f'<text x="{px(t):.1f}" y="{height - bottom + 14}" text-anchor="middle" font-size="10">{plain_number(t, 3)}</text>')
    for t in _ticks(y0, y1):
        body.append(f'<text x="{left - 4}" y="{py(t) + 3:.1f}" text-anchor="end" font-size="10">{plain_number(t, 3)}</text>')
    for i, (a, b) in enumerate(pts):
        # Ratings are integers: a small deterministic jitter separates stacked points.
        jx = (((i * 0.618034) % 1.0) - 0.5) * 0.04 * (x1 - x0)
        jy = (((i * 0.754878) % 1.0) - 0.5) * 0.04 * (y1 - y0)
        body.append(f'<circle class="point" cx="{px(a + jx):.1f}" cy="{py(b + jy):.1f}" r="3.5" fill="{PALETTE[0]}" fill-opacity="0.6"/>')
    if len(pts) >= 2:
        mx = sum(a for a, _ in pts) / len(pts)
        my = sum(b for _, b in pts) / len(pts)
        sxx = sum((a - mx) ** 2 for a, _ in pts)
        if sxx > 0:
            slope = sum((a - mx) * (b - my) for a, b in pts) / sxx
            ya, yb = my + slope * (x0 - mx), my + slope * (x1 - mx)
            body.append(
                f'<line class="fit" x1="{px(x0):.1f}" y1="{py(min(max(ya, y0), y1)):.1f}" x2="{px(x1):.1f}" '
                f'y2="{py(min(max(yb, y0), y1)):.1f}" stroke="{PALETTE[5]}" stroke-width="2"/>'
            )
    return _svg(width, height, body, "scatter", title)


@dataclass(frozen=True)
class Spread:
    """The values one (model, task) took under different prompt variants."""

    label: str
    values: Sequence[tuple[str, float]]  # (variant name, metric value)


def range_chart(rows: Sequence[Spread], title: str, domain: tuple[float, float] | None = None, unit: str = "", width: int = 640) -> str:
    """One line per row from its lowest to its highest value, a dot per variant."""
    allv = [v for r in rows for _, v in r.values if math.isfinite(v)]
    x, body, height = _row_axis(allv, len(rows), domain, unit, width)
    for i, r in enumerate(rows):
        y = ROW_TOP + i * ROW_H + ROW_H / 2
        body.append(f'<text x="{ROW_LABEL_W - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(r.label[:30])}</text>')
        vals = [v for _, v in r.values if math.isfinite(v)]
        if not vals:
            continue
        body.append(f'<line class="range" x1="{x(min(vals)):.1f}" y1="{y:.1f}" x2="{x(max(vals)):.1f}" y2="{y:.1f}" stroke="#888" stroke-width="3"/>')
        for k, (name, v) in enumerate(r.values):
            if math.isfinite(v):
                body.append(f'<circle class="point" cx="{x(v):.1f}" cy="{y:.1f}" r="4.5" fill="{colour(k)}"><title>{escape(name)}: {plain_number(v, 3)}</title></circle>')
    return _svg(width, height, body, "range", title)
