"""Similarity over time as a Vega-Lite chart: the page's video plot, drawn by the browser.

In: the curve [(time s, score or NaN)], matching segments [(start, end)], marked moments
[(time, score, caption)], the match threshold and the video's duration. Out: a Vega-Lite v5 spec
(a plain dict, JSON-ready) that Gradio's Plot component renders natively (vega-embed, as a
"line" chart: it takes its container's width, so it stays readable on a 390-px phone), and each
point, moment and segment has a tooltip in the page's one time format (00:02.00).

No plotting library on the server: the spec is data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rvs.video.results import clock

CURVE = "#1f6fd1"
SEGMENT = "#f5b400"
MOMENT = "#d9480f"
# Axis labels on the player's clock, the page's one time format (00:02.00; rvs.video.results.clock):
# UTC, so no time zone shifts the minutes.
CLOCK_LABEL = (
    "utcFormat(datum.value * 1000, datum.value >= 3600 ? '%-H:%M:%S' : '%M:%S') + '.' "
    "+ pad(toString(round(datum.value * 100) % 100), 2, '0', 'left')"
)


def similarity_chart(
    curve: Sequence[tuple[float, float | None]],
    segments: Sequence[tuple[float, float]] = (),
    moments: Sequence[tuple[float, float, str]] = (),
    threshold: float | None = None,
    duration: float | None = None,
    y_title: str = "similarity",
    title: str = "",
    height: int = 190,
    words: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The Vega-Lite spec (see the module docstring). NaN scores are left out (no face in that
    frame); a segment shorter than 1/150 of the video is widened so it stays visible. `words`:
    the tooltips' titles (keys time, segment, threshold, moment; the page's are
    rvs.app.answers.CHART_WORDS)."""
    w = {"time": "time", "segment": "segment", "threshold": "threshold", "moment": "moment", **(words or {})}
    pts = [(float(t), float(y)) for t, y in curve if y is not None and math.isfinite(float(y)) and math.isfinite(float(t))]
    end = float(duration) if duration and duration > 0 else (max((t for t, _ in pts), default=1.0) or 1.0)
    min_width = end / 150
    bands = []
    for a, b in segments:
        pad = max(0.0, (min_width - (b - a)) / 2)
        bands.append({"start": max(0.0, a - pad), "end": min(end, b + pad), "when": f"{clock(a)}–{clock(b)}"})
    ys = [y for _, y in pts] + [s for _, s, _ in moments if math.isfinite(s)]
    y_max = max([1.0, *ys, threshold or 0.0])
    x = {"field": "t", "type": "quantitative", "title": None, "scale": {"domain": [0, end], "nice": False},
         "axis": {"labelExpr": CLOCK_LABEL, "tickCount": 5, "labelFontSize": 12, "labelOverlap": True, "grid": False}}
    layers: list[dict[str, Any]] = []
    if bands:
        layers.append({
            "data": {"values": bands},
            "mark": {"type": "rect", "color": SEGMENT, "fill": SEGMENT, "stroke": SEGMENT, "strokeWidth": 0, "opacity": 0.35},
            "encoding": {"x": {**x, "field": "start"}, "x2": {"field": "end"},
                         "tooltip": [{"field": "when", "title": w["segment"]}]},
        })
    if pts:
        layers.append({
            "data": {"values": [{"t": round(t, 3), "y": round(y, 4), "time": clock(t)} for t, y in pts]},
            "mark": {"type": "line", "color": CURVE, "stroke": CURVE, "strokeWidth": 2, "point": {"size": 18, "color": CURVE, "fill": CURVE, "stroke": CURVE} if len(pts) <= 120 else False},
            "encoding": {"x": x, "y": {"field": "y", "type": "quantitative", "title": y_title, "scale": {"domain": [0, round(y_max, 3)]},
                                        "axis": {"labelFontSize": 12, "titleFontSize": 12, "tickCount": 4}},
                         "tooltip": [{"field": "time", "title": w["time"]}, {"field": "y", "title": y_title, "format": ".2f"}]},
        })
    if threshold is not None and math.isfinite(threshold):
        layers.append({
            "data": {"values": [{"y": round(float(threshold), 4)}]},
            "mark": {"type": "rule", "color": "#666", "stroke": "#666", "strokeDash": [5, 4]},
            "encoding": {"y": {"field": "y", "type": "quantitative"}, "tooltip": [{"field": "y", "title": w["threshold"], "format": ".2f"}]},
        })
    if moments:
        layers.append({
            "data": {"values": [{"t": round(t, 3), "y": round(s, 4) if math.isfinite(s) else 0.0, "time": clock(t), "what": c} for t, s, c in moments]},
            "mark": {"type": "point", "shape": "triangle-down", "filled": True, "size": 140, "color": MOMENT, "fill": MOMENT, "stroke": MOMENT, "opacity": 1},
            "encoding": {"x": x, "y": {"field": "y", "type": "quantitative"},
                         "tooltip": [{"field": "time", "title": w["time"]}, {"field": "what", "title": w["moment"]}]},
        })
    if not layers:  # nothing scored: an empty time axis, not a broken chart
        layers.append({"data": {"values": [{"t": 0.0}]}, "mark": {"type": "tick", "opacity": 0}, "encoding": {"x": x}})
    # No width: Gradio's Plot sets it to its container's and follows resizes. An empty top-level
    # encoding, because Gradio restyles line charts through it (fonts and colours of the page's theme).
    spec: dict[str, Any] = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "height": height,
        "encoding": {},
        "layer": layers,
        "config": {"view": {"stroke": None}, "axis": {"labelFontSize": 12, "titleFontSize": 12}},
    }
    if title:
        spec["title"] = {"text": title, "fontSize": 13, "anchor": "start", "fontWeight": "normal"}
    return spec
