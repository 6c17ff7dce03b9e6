"""Plots put on disk: one HTML page that draws every plot offline (the vega, vega-lite and
vega-embed scripts inlined from ``static/``, so it needs no CDN and works from a file:// URL
or an email attachment), and a PNG and an SVG per plot.

Pictures come from vl-convert (the optional ``[plots]`` extra): it runs the very Vega-Lite
spec the page runs, in an embedded JavaScript engine, so a picture looks as the page does; one
wheel with no dependencies, where matplotlib would need numpy and a second drawing of every
template that drifts from the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from repro.errors import ReproError

PAGE = "index.html"
DRAWN = ".drawn.json"  # beside the pictures: the digest of the spec each one shows
SCRIPTS = ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
# The Vega-Lite major the specs are written for, which vl-convert is asked to run.
_VEGA_LITE = "5"
NO_PICTURES = "PNG and SVG need the plots extra: pip install 'repro-pipelines[plots]'"
_EMBED_OPTIONS = {
    "renderer": "svg",
    # Export stays; the editor and source links would leave the page for the network.
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}


class Figure(NamedTuple):
    """A plot ready to be put on disk: its file-name stem, title and Vega-Lite spec."""

    name: str
    title: str
    spec: dict[str, Any]


def file_stem(text: str) -> str:
    """A plot's name as a file name: a path's separators and odd characters become '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "plot"


def _inline_json(value: Any) -> str:
    # '<' escaped so no string in the data can close the script element.
    return json.dumps(value, sort_keys=True).replace("<", "\\u003c")


def page(figures: Sequence[Figure]) -> str:
    """The HTML page drawing every figure, its scripts inlined."""
    static = resources.files("repro.metrics") / "static"
    scripts = "\n".join(
        f"<script>{(static / name).read_text(encoding='utf-8')}</script>" for name in SCRIPTS
    )
    divs = "\n".join(f'<div class="plot" id="plot-{i}"></div>' for i in range(len(figures)))
    specs = _inline_json([figure.spec for figure in figures])
    # data-drawn says every plot was drawn (tests and scripts wait for it); data-error why not.
    return f"""<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>repro plots</title>
<style>body {{ font-family: sans-serif; }} .plot {{ margin: 1em; display: inline-block; }}</style>
{scripts}
</head>
<body>
{divs}
<script>
const specs = {specs};
Promise.all(specs.map((spec, i) => vegaEmbed("#plot-" + i, spec, {_inline_json(_EMBED_OPTIONS)})))
  .then(() => {{ document.body.dataset.drawn = String(specs.length); }})
  .catch((error) => {{ document.body.dataset.error = String(error); console.error(error); }});
</script>
</body>
</html>
"""


def pictures(figures: Sequence[Figure], folder: Path) -> dict[str, bytes] | None:
    """File name -> bytes of a PNG and an SVG per figure, and of the record of what they
    show; None without vl-convert. A figure whose pictures in ``folder`` show its very spec
    is not drawn again: drawing one takes most of a second."""
    try:
        import vl_convert
    except ImportError:
        return None
    from repro.objects.digest import bytes_md5

    # The newest Vega-Lite 5 it carries: the specs are written for 5, as the page's script.
    version = max(
        (v for v in vl_convert.get_vegalite_versions() if v.split(".")[0] == _VEGA_LITE),
        key=lambda v: tuple(map(int, v.split("."))),
    )
    try:
        before = json.loads((folder / DRAWN).read_bytes())
    except (OSError, ValueError):
        before = {}
    drawn: dict[str, str] = {}
    found: dict[str, bytes] = {}
    for figure in figures:
        svg_name, png_name = f"{figure.name}.svg", f"{figure.name}.png"
        drawn[figure.name] = bytes_md5(f"{version} {_inline_json(figure.spec)}".encode())
        if (
            isinstance(before, dict)
            and before.get(figure.name) == drawn[figure.name]
            and (folder / svg_name).is_file()
            and (folder / png_name).is_file()
        ):
            continue
        try:
            svg = vl_convert.vegalite_to_svg(figure.spec, vl_version=version)
            png = vl_convert.svg_to_png(svg, scale=2)
        except (ValueError, RuntimeError) as exc:  # its one error type for a spec it cannot draw
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no reason given"
            raise ReproError(f"plot '{figure.title}' cannot be drawn ({first})") from None
        found[svg_name] = svg.encode("utf-8")
        found[png_name] = png
    found[DRAWN] = json.dumps(drawn, indent=1, sort_keys=True).encode()  # after the pictures
    return found


def write(folder: Path, figures: Sequence[Figure], images: dict[str, bytes] | None) -> Path:
    """The page and the pictures in ``folder``, each file replaced whole; the page's path."""
    from repro.fsutil import write_atomic

    stems = [figure.name for figure in figures]
    if len(set(stems)) != len(stems):
        raise ReproError("two plots would share a file name; name them apart (plots modify)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReproError(f"cannot make '{folder}' ({exc.strerror}); choose another -o") from None
    for name, data in (images or {}).items():
        write_atomic(folder / name, data)
    target = folder / PAGE
    write_atomic(target, page(figures).encode("utf-8"))
    return target
