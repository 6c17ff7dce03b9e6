"""How each kind of plot is drawn: our own Vega-Lite specs, one per template.

Stage files name a template and the command line offers the names, so this module sits low
in the layers and imports nothing: a spec is built from plain records. The same spec goes
into the HTML page and to the PNG/SVG renderer, so the pictures match the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

TEMPLATES = ("linear", "scatter", "bar", "confusion", "smooth")
DEFAULT_TEMPLATE = "linear"
# The field that names each record's revision: one series (colour) per revision.
REVISION = "rev"
# The x of records that have none: their position in the file, as DVC's "step".
STEP = "step"
_SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"  # read for its version, not fetched


class Drawing(NamedTuple):
    """What one plot shows: its records (each with REVISION), axes, template and words."""

    records: Sequence[dict[str, Any]]
    x: str
    y: str
    template: str = DEFAULT_TEMPLATE
    title: str = ""
    x_label: str | None = None
    y_label: str | None = None
    revisions: int = 1  # how many revisions the records come from


def _kind(records: Sequence[dict[str, Any]], field: str) -> str:
    """quantitative when every value is a number, else ordinal (epochs as text, labels)."""
    numbers = all(
        isinstance(r.get(field), (int, float)) and not isinstance(r.get(field), bool)
        for r in records
    )
    return "quantitative" if numbers and records else "ordinal"


def spec(drawing: Drawing) -> dict[str, Any]:
    """The Vega-Lite spec of a drawing, data inlined."""
    records, x, y = drawing.records, drawing.x, drawing.y
    x_axis: dict[str, Any] = {"field": x, "type": _kind(records, x), "title": drawing.x_label or x}
    y_axis = {"field": y, "type": "quantitative", "title": drawing.y_label or y}
    if x == STEP:
        x_axis["axis"] = {"tickMinStep": 1}  # positions are whole numbers
    if x_axis["type"] == "ordinal":
        x_axis["sort"] = None  # the order of the file (or of the revisions), not of the alphabet
    series = drawing.revisions > 1
    color = {"color": {"field": REVISION, "type": "nominal", "title": "revision"}} if series else {}
    body: dict[str, Any]
    if drawing.template == "scatter":
        body = {"mark": {"type": "point", "filled": True}, "encoding": {"x": x_axis, "y": y_axis}}
        body["encoding"].update(color)
    elif drawing.template == "bar":
        x_axis["type"] = "nominal" if x_axis["type"] == "ordinal" else "ordinal"
        offset = {"xOffset": {"field": REVISION}} if series else {}
        body = {"mark": "bar", "encoding": {"x": x_axis, "y": y_axis, **color, **offset}}
    elif drawing.template == "confusion":
        body = _confusion(drawing, series)
    elif drawing.template == "smooth":
        body = {
            "encoding": {"x": x_axis, "y": y_axis, **color},
            "layer": [
                {"mark": {"type": "point", "opacity": 0.3}},
                {
                    "mark": "line",
                    "transform": [{"loess": y, "on": x, "groupby": [REVISION], "bandwidth": 0.3}],
                },
            ],
        }
    else:
        body = {"mark": {"type": "line", "point": True}, "encoding": {"x": x_axis, "y": y_axis}}
        body["encoding"].update(color)
    return {
        "$schema": _SCHEMA,
        "title": drawing.title,
        "data": {"values": list(records)},
        **({"width": 400, "height": 300} if drawing.template != "confusion" else {}),
        **body,
    }


def _confusion(drawing: Drawing, series: bool) -> dict[str, Any]:
    """Counts of (actual, predicted) pairs as a heat map with the count written in each cell;
    side by side, one per revision."""
    x, y = drawing.x, drawing.y
    cells = {
        "transform": [{"aggregate": [{"op": "count", "as": "count"}], "groupby": [REVISION, x, y]}],
        "encoding": {
            "x": {"field": x, "type": "nominal", "title": drawing.x_label or x},
            "y": {"field": y, "type": "nominal", "title": drawing.y_label or y},
        },
        "layer": [
            {
                "mark": "rect",
                "encoding": {"color": {"field": "count", "type": "quantitative"}},
            },
            {
                "mark": "text",
                "encoding": {"text": {"field": "count", "type": "quantitative"}},
            },
        ],
        "width": 300,
        "height": 300,
    }
    if not series:
        return cells
    return {"facet": {"column": {"field": REVISION, "title": "revision"}}, "spec": cells}
