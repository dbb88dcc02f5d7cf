"""Figures of the report: matplotlib draws the :class:`~llama_audit.report.section.FigureSpec` s that
analyzers declare (their ``report_figures``), as SVG and PNG files and inline in the HTML report.

Why figures at all: the Llama 2 paper (Touvron et al. 2023, arXiv 2307.09288, section 4.1) shows
one of its findings as a figure (Figure 13: the share of documents per classifier score, on a log
axis, where the 0.2% tail beyond 0.5 is visible beside the benign bulk), and a reviewer compares
shares with their intervals, and with the paper's, faster on a chart than in a column of numbers.

This module knows kinds of figures (histogram, bars), never an analyzer: what to draw is declared
by each section's owner. matplotlib is an optional extra (``pip install 'llama-audit[report]'``),
imported here only, when a figure is drawn; without it the report has its tables and says how to
get figures (:data:`INSTALL_HINT`).

Same input, same bytes: the style is fixed here (the DejaVu Sans font that ships with matplotlib,
glyphs drawn as paths so no font is needed to view the SVG), the SVG ids are salted with a constant,
and neither file records a date or a software version.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import logging
import textwrap
import warnings
from html import escape as escape_html
from pathlib import Path
from typing import Iterable, Sequence

from llama_audit.report.section import FigurePanel, FigureSpec, printable
from llama_audit.store import atomic_write_bytes
from llama_audit.types import ConfigError

#: printed by ``report`` when matplotlib is missing: how to get the figures
INSTALL_HINT = "figures need matplotlib: pip install 'llama-audit[report]'"
#: where ``report`` writes the figures inside OUT unless ``--figures DIR`` says otherwise

#: the fixed style of every figure (the rcParams of the drawing); see the module docstring
STYLE = {
    "font.family": "DejaVu Sans",  # ships with matplotlib: the same glyphs on every machine
    "font.size": 9.0,
    "svg.fonttype": "path",  # glyphs as paths: the SVG needs no font to be seen as drawn
    "svg.hashsalt": "llama-audit",  # fixed ids in the SVG (otherwise random per run)
    "svg.image_inline": True,
    "text.usetex": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
    "savefig.dpi": 150,
    "savefig.facecolor": "white",
    "path.simplify": True,
}
#: colours: our numbers, the paper's markers, a threshold line
OURS_COLOUR = "#3b6ea5"
HISTOGRAM_COLOUR = "#b04a4a"
PAPER_COLOUR = "#111111"
THRESHOLD_COLOUR = "#d08c00"
#: inches: the width of every figure, the height of a row of panels, the room of the caption
FIGURE_WIDTH = 8.0
PANEL_HEIGHT = 3.0
CAPTION_CHARS = 120  # characters per caption line in the image files
MAX_COLUMNS = 3  # panels per row
HORIZONTAL_COLUMNS = 2  # panels per row when one has horizontal bars (room for their labels)


@dataclasses.dataclass(frozen=True)
class DrawnFigure:
    """A figure drawn: its spec and the bytes of its two files."""

    spec: FigureSpec
    svg: bytes
    png: bytes


def available() -> bool:
    """Whether matplotlib can be imported here (the ``report`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def default_directory(out_root: str | Path) -> Path:
    """Where ``report`` writes the figures of OUT when ``--figures`` does not say."""
    from llama_audit.store import OutDir  # the OUT layout lives there

    return OutDir(str(out_root)).figures


def check_directory(directory: str | Path) -> None:
    """A ``--figures DIR`` that cannot hold the figures (an existing file): a one-line error before
    any work."""
    p = Path(directory)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"--figures {directory}: exists and is not a directory")


def unique_names(specs: Iterable[FigureSpec]) -> list[FigureSpec]:
    """The specs with distinct names (``NAME-2``, ... for a name already taken by an earlier
    section's figure): two sections' figures never overwrite each other's files."""
    seen: set[str] = set()
    out = []
    for spec in specs:
        name, n = spec.name, 1
        while name in seen:
            n += 1
            name = f"{spec.name}-{n}"
        seen.add(name)
        out.append(spec if name == spec.name else dataclasses.replace(spec, name=name))
    return out


def draw(spec: FigureSpec) -> DrawnFigure:
    """The figure's SVG and PNG bytes (matplotlib; identical for identical specs)."""
    import matplotlib
    from matplotlib.figure import Figure

    most = HORIZONTAL_COLUMNS if any(p.horizontal for p in spec.panels) else MAX_COLUMNS
    columns = min(most, len(spec.panels)) or 1
    rows = -(-len(spec.panels) // columns) or 1
    caption = "\n".join(plain(line) for line in textwrap.wrap(printable(spec.caption), CAPTION_CHARS))
    caption_lines = caption.count("\n") + 1 if caption else 0
    with matplotlib.rc_context(STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a glyph DejaVu lacks: drawn as a box, not a warning per run
        logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
        fig = Figure(figsize=(FIGURE_WIDTH, PANEL_HEIGHT * rows + 0.18 * caption_lines + 0.4), layout="constrained")
        fig.suptitle(plain(spec.title), fontsize=11, fontweight="bold")
        axes = fig.subplots(rows, columns, squeeze=False).ravel()
        for ax, panel in zip(axes, spec.panels):
            (draw_histogram if spec.kind == "histogram" else draw_bars)(ax, panel)
        for ax in axes[len(spec.panels):]:
            ax.set_visible(False)
        if len(axes[0].get_legend_handles_labels()[0]) > 1:  # one legend: the panels share their series
            axes[0].legend(loc="best", fontsize=7.5, framealpha=0.85)
        if caption:
            fig.supxlabel(caption, fontsize=8, color="#444444", ha="left", x=0.01)
        svg = _save(fig, "svg", {"Date": None, "Creator": None})
        fig.set_layout_engine("none")  # laid out by the first save: the second keeps it (half the time)
        png = _save(fig, "png", {"Software": None})
    return DrawnFigure(spec, svg, png)


def _save(fig, fmt: str, metadata: dict) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata=metadata)
    return buf.getvalue()


def plain(text: str) -> str:
    """A label as text: control characters shown, and a ``$`` (in a lexicon term, a plugin's label)
    a dollar sign, never the start of matplotlib's math markup."""
    return printable(str(text)).replace("$", r"\$")


def _labelled(ax, panel: FigurePanel) -> None:
    if panel.title:
        ax.set_title(plain(panel.title), fontsize=9.5)
    ax.set_xlabel(plain(panel.x_label))
    ax.set_ylabel(plain(panel.y_label))


def draw_histogram(ax, panel: FigurePanel) -> None:
    """Bins between ``edges`` (the first series), reference lines at the thresholds."""
    edges = list(panel.edges)
    widths = [b - a for a, b in zip(edges, edges[1:])]
    for series in panel.series:
        values = [0.0 if v is None else v for v in series.values]
        ax.bar(edges[:-1], values, width=widths, align="edge", color=HISTOGRAM_COLOUR, linewidth=0,
               label=plain(series.label))
    for x, label in panel.thresholds:
        ax.axvline(x, color=THRESHOLD_COLOUR, linestyle="--", linewidth=1.2, label=plain(label))
    if panel.log_y:
        ax.set_yscale("log", nonpositive="clip")
    if edges:
        ax.set_xlim(edges[0], edges[-1])
    _labelled(ax, panel)


def draw_bars(ax, panel: FigurePanel) -> None:
    """One bar per category for each ``bars`` series (side by side), the 95% intervals as error
    bars, each ``markers`` series as points over them."""
    n = len(panel.categories)
    positions = list(range(n))
    bar_series = [s for s in panel.series if s.style != "markers"]
    width = 0.8 / max(1, len(bar_series))
    offsets = {id(s): (i - (len(bar_series) - 1) / 2) * width for i, s in enumerate(bar_series)}
    for series in panel.series:
        at = [p + offsets.get(id(series), 0.0) for p in positions]
        shown = [(x, v, series.intervals[i] if i < len(series.intervals) else None)
                 for i, (x, v) in enumerate(zip(at, series.values)) if v is not None]
        if not shown:
            continue
        xs, vs = [x for x, _, _ in shown], [v for _, v, _ in shown]
        label = plain(series.label)
        if series.style == "markers":
            kw = dict(marker="D", markersize=5, linestyle="none", color=PAPER_COLOUR, label=label, zorder=3)
            ax.plot(vs, xs, **kw) if panel.horizontal else ax.plot(xs, vs, **kw)
            continue
        (ax.barh if panel.horizontal else ax.bar)(xs, vs, width * 0.95, color=OURS_COLOUR, label=label)
        with_ci = [(x, v, ci) for x, v, ci in shown if ci is not None]
        if with_ci:
            err = [[max(0.0, v - ci[0]) for _, v, ci in with_ci], [max(0.0, ci[1] - v) for _, v, ci in with_ci]]
            cx, cv = [x for x, _, _ in with_ci], [v for _, v, _ in with_ci]
            kw = dict(fmt="none", ecolor="#333333", elinewidth=1, capsize=2.5, zorder=2)
            ax.errorbar(cv, cx, xerr=err, **kw) if panel.horizontal else ax.errorbar(cx, cv, yerr=err, **kw)
    labels = [plain(c) for c in panel.categories]
    if panel.horizontal:
        ax.set_yticks(positions, labels)
        ax.invert_yaxis()  # the first category on top, as in a table
        ax.grid(axis="y", visible=False)
        if panel.log_y:
            ax.set_xscale("log", nonpositive="clip")
    else:
        ax.set_xticks(positions, labels, rotation=45 if n > 8 else 0, ha="right" if n > 8 else "center")
        ax.grid(axis="x", visible=False)
        if panel.log_y:
            ax.set_yscale("log", nonpositive="clip")
    _labelled(ax, panel)


def write_figures(drawn: Sequence[DrawnFigure], directory: str | Path) -> list[Path]:
    """Each figure as ``NAME.svg`` and ``NAME.png`` in ``directory`` (created), written atomically;
    the names are checked file names (:class:`FigureSpec`), so nothing lands outside it."""
    directory = Path(directory)
    written = []
    for figure in drawn:
        for suffix, data in (("svg", figure.svg), ("png", figure.png)):
            path = directory / f"{figure.spec.name}.{suffix}"
            atomic_write_bytes(path, data)
            written.append(path)
    return written


def inline_svg(svg: bytes) -> bytes:
    """The SVG document from its ``<svg`` element on: no XML prolog, no DTD address."""
    start = svg.find(b"<svg")
    return svg[start:] if start >= 0 else svg


def html_figure(figure: DrawnFigure) -> str:
    """The figure for the HTML report: the SVG as a ``data:`` image (vector, printable, its ids
    kept apart from the page's and the other figures'); nothing to fetch. Its caption is drawn in
    the image (the files stand alone) and is its alternative text."""
    data = base64.b64encode(inline_svg(figure.svg)).decode("ascii")
    alt = escape_html(printable(f"{figure.spec.title}. {figure.spec.caption}"), quote=True)
    return (f'<figure class="chart" id="figure-{figure.spec.name}"><img src="data:image/svg+xml;base64,{data}" '
            f'alt="{alt}"></figure>')
