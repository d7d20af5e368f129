"""Pages of the PDF report: text and tables flowed over A4 landscape pages,
and figure pages.  Report sections (analysis/sections) build lists of
blocks and figures through a :class:`Report`; they never place text by hand.

Text is drawn with matplotlib (fonts embedded as TrueType, pdf.fonttype 42,
so pdftotext and readers can search it).  Tables use a monospaced font:
column widths are then exact and nothing overlaps.
"""

from __future__ import annotations

import functools
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np

from analysis._results import Run

PAGE_W, PAGE_H = 11.69, 8.27            # A4 landscape, inches
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 0.6, 0.55, 0.65
SANS, MONO = "DejaVu Sans", "DejaVu Sans Mono"
MONO_EM = 0.602                          # DejaVu Sans Mono advance width / em
SANS_EM = 0.54                           # a generous average for DejaVu Sans text
LINE = 1.38                              # line height / font size
MIN_TABLE_SIZE = 5.5
ROWS_PER_PAGE = 25
KEEP_TOGETHER_BELOW = 2.5                # inches: a table starting lower moves to a new page if that keeps it whole
FOOT_SIZE = 7


@dataclass
class Heading:
    text: str
    size: float = 15
    keep_with_next: float = 1.2          # inches that must follow on the same page


@dataclass
class Text:
    text: str
    size: float = 9.5
    mono: bool = False
    color: str = "black"
    indent: float = 0.0                  # inches
    bold: bool = False
    hanging: str = ""                    # prefix for wrapped continuation lines


@dataclass
class Space:
    height: float = 0.15


@dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    size: float = 8.5
    right: Sequence[bool] | None = None       # right-align these columns (numbers)
    wrap: dict[int, int] = field(default_factory=dict)   # column -> max characters
    highlight: Sequence[bool] | None = None   # rows drawn in the warning colour
    max_rows: int = ROWS_PER_PAGE
    caption: str | None = None
    notes: Sequence[str] = ()


Block = Heading | Text | Space | Table


def _put(fig, x: float, y: float, text: str, **kw) -> None:
    """Text at figure coordinates, never parsed as mathtext (a "$" in a
    failure reason or an environment value is just a character): what
    fig.text() makes, as a _Line."""
    line = _line_class()(x, y, text, parse_math=False, transform=fig.transSubfigure, **kw)
    line.set_figure(fig)
    fig.texts.append(line)


@functools.cache
def _line_class():
    """_Line, made on first use: matplotlib is imported only for a report."""
    import matplotlib as mpl
    import matplotlib.colors as mcolors
    from matplotlib import font_manager
    from matplotlib.text import Text

    class _Line(Text):
        """A Text of one line, drawn as Text draws it, measured a character
        at a time.  Text measures a line by laying it out whole (a FreeType
        glyph load per character), then lays it out again to draw it; the
        report's text pages are a hundred thousand characters of a few
        hundred distinct ones, so the measures are kept per font and
        character.  A line's ascent and descent are its characters' largest
        (their boxes' union: where each sits along the line does not
        matter), and at least the font's (OS/2 table), as Text has them.
        Anything but one line, left-aligned at its top or baseline, goes to
        Text.draw."""

        _measured: dict = {}       # (measure, dpi, font, character) -> (ascent, descent)

        def _simple(self) -> bool:
            text = self.get_text()
            return (bool(text) and "\n" not in text and self.get_rotation() == 0
                    and self.get_horizontalalignment() == "left"
                    and self.get_verticalalignment() in ("top", "baseline")
                    and self.get_bbox_patch() is None and not self.get_path_effects()
                    and not self.get_usetex() and not self.get_parse_math()
                    and not self.get_wrap() and self.get_linespacing() == "normal"
                    # Type 1 fonts: Text takes their heights from AFM files
                    and not mpl.rcParams["pdf.use14corefonts"] and not mpl.rcParams["ps.useafm"])

        def _extent(self, renderer, dpi: float) -> tuple[float, float]:
            prop = self.get_fontproperties()
            measure = renderer.get_text_width_height_descent
            key = (getattr(measure, "__func__", measure), dpi, prop)
            stored = key[:2] + (prop.copy(),)      # a key that nobody changes later
            ascent = descent = None
            for ch in set(self.get_text()):
                got = self._measured.get(key + (ch,))
                if got is None:
                    _, h, d = measure(ch, prop, ismath=False)
                    got = self._measured[stored + (ch,)] = (h - d, d)
                ascent = got[0] if ascent is None else max(ascent, got[0])
                descent = got[1] if descent is None else max(descent, got[1])
            font = self._measured.get(stored[1:])
            if font is None:
                ft = font_manager.get_font(font_manager.findfont(prop))
                table = ft.get_sfnt_table("OS/2")
                scale = 1 / ft.get_sfnt_table("head")["unitsPerEm"] * prop.get_size_in_points() \
                    * dpi / 72
                font = self._measured[stored[1:]] = (table["sTypoAscender"] * scale,
                                                     -table["sTypoDescender"] * scale)
            return max(ascent, font[0]), max(descent, font[1])

        def draw(self, renderer):
            if renderer is not None:
                self._renderer = renderer
            if not self.get_visible():
                return
            if not self._simple():
                return super().draw(renderer)
            # as Text.draw and Text._get_layout compute it for one such line
            a, d = self._extent(renderer, self.get_figure(root=True).dpi)
            y = -a - (0 if self.get_verticalalignment() == "top" else (-a - d) + d)
            renderer.open_group("text", self.get_gid())
            posx, posy = self.get_transform().transform((float(self.convert_xunits(self._x)),
                                                         float(self.convert_yunits(self._y))))
            gc = renderer.new_gc()
            gc.set_foreground(mcolors.to_rgba(self.get_color()), isRGBA=True)
            gc.set_alpha(self.get_alpha())
            gc.set_url(self.get_url())
            gc.set_antialiased(self.get_antialiased())
            gc.set_snap(self.get_snap())
            self._set_gc_clip(gc)
            x, y = 0.0 + posx, y + posy
            if renderer.flipy():
                y = renderer.get_canvas_width_height()[1] - y
            renderer.draw_text(gc, x, y, self.get_text(), self.get_fontproperties(), 0,
                               ismath=False, mtext=self)
            gc.restore()
            renderer.close_group("text")
            self.stale = False

    return _Line


def _inch_to_fig(x: float, y: float) -> tuple[float, float]:
    return x / PAGE_W, 1 - y / PAGE_H


def _wrap(text: str, width_in: float, size: float, mono: bool, hanging: str = "",
          bold: bool = False) -> list[str]:
    # bold glyphs are about a tenth wider than regular ones
    em = (MONO_EM if mono else SANS_EM) * (1.12 if bold else 1.0)
    chars = max(20, int(width_in * 72 / (size * em)))
    out = []
    for para in text.split("\n"):
        out += textwrap.wrap(para, chars, subsequent_indent=hanging, break_long_words=True,
                             break_on_hyphens=False) or [""]
    return out


class _TableLayout:
    """A table's cells (wrapped), column widths, font size and heights."""

    gap = 2

    def __init__(self, t: Table):
        ncol = len(t.header)
        self.right = list(t.right) if t.right is not None else [False] * ncol
        self.cells = [[(textwrap.wrap(str(c), t.wrap[i], break_on_hyphens=False) or [""])
                       if i in t.wrap else str(c).split("\n") for i, c in enumerate(row)]
                      for row in t.rows]
        self.widths = [max([len(t.header[i])] + [len(line) for row in self.cells for line in row[i]])
                       for i in range(ncol)]
        self.total_chars = sum(self.widths) + self.gap * (ncol - 1)
        avail = PAGE_W - 2 * MARGIN_X
        size = min(t.size, avail * 72 / (max(self.total_chars, 1) * MONO_EM))
        self.size = max(size, MIN_TABLE_SIZE)
        self.line_h = self.size * LINE / 72
        self.pad = 0.12 * self.line_h
        self.show_header = any(t.header)
        self.header_h = self.row_height([[h] for h in t.header]) if self.show_header else 0.0
        # a long caption wraps (sans, bold: a little wider than the average)
        self.caption_lines = _wrap(t.caption, (PAGE_W - 2 * MARGIN_X) * 0.94, t.size + 1,
                                   False) if t.caption else []
        self.caption_line_h = (t.size + 1) * LINE / 72
        self.caption_h = len(self.caption_lines) * self.caption_line_h
        self.first_page_height = self.caption_h + self.header_h + sum(
            self.row_height(c) for c in self.cells[:t.max_rows])

    def row_height(self, texts: list[list[str]]) -> float:
        return max(len(c) for c in texts) * self.line_h + 2 * self.pad


class Report:
    """What a report section gets: the run, and helpers that add pages."""

    def __init__(self, run: Run, pdf, title: str):
        self.run = run
        self.pdf = pdf
        self.title = title
        self.pages = 0
        self._fig = None
        self._y = 0.0

    # -- pages ---------------------------------------------------------------
    def _footer(self, fig) -> None:
        self.pages += 1
        _put(fig, MARGIN_X / PAGE_W, 0.3 / PAGE_H, self.title, fontsize=FOOT_SIZE, color="0.4",
             family=SANS)
        _put(fig, 1 - MARGIN_X / PAGE_W, 0.3 / PAGE_H, f"page {self.pages}", fontsize=FOOT_SIZE,
             color="0.4", ha="right", family=SANS)

    def _new_text_page(self):
        from matplotlib.figure import Figure
        self.end_page()
        self._fig = Figure(figsize=(PAGE_W, PAGE_H))
        self._y = MARGIN_TOP
        return self._fig

    def end_page(self) -> None:
        """Finish the current text page (the next block starts a new one)."""
        if self._fig is not None:
            self._footer(self._fig)
            self.pdf.savefig(self._fig)
            self._fig = None

    def _room(self) -> float:
        return PAGE_H - MARGIN_BOTTOM - self._y

    def _need(self, height: float) -> None:
        if self._fig is None or self._room() < height:
            self._new_text_page()

    # -- flowed text and tables ----------------------------------------------
    def flow(self, blocks: Sequence[Block], new_page: bool = True) -> None:
        """Lay the blocks out top to bottom, starting a page when one is full.
        The last page stays open for the next flow() unless end_page()."""
        if new_page:
            self._new_text_page()
        for n, block in enumerate(blocks):
            if isinstance(block, Heading):
                h = block.size * LINE / 72
                follow = block.keep_with_next
                nxt = blocks[n + 1] if n + 1 < len(blocks) else None
                if isinstance(nxt, Table) and self._y > MARGIN_TOP + KEEP_TOGETHER_BELOW:
                    # a heading goes where its table goes (see _table)
                    table_h = _TableLayout(nxt).first_page_height
                    if table_h + h + 0.2 <= PAGE_H - MARGIN_TOP - MARGIN_BOTTOM:
                        follow = max(follow, table_h + 0.2)
                self._need(h + follow)
                if self._y > MARGIN_TOP:
                    self._y += 0.08
                x, y = _inch_to_fig(MARGIN_X, self._y)
                _put(self._fig, x, y, block.text, fontsize=block.size, weight="bold", va="top",
                     family=SANS)
                self._y += h + 0.06
            elif isinstance(block, Space):
                if self._fig is not None:
                    self._y += block.height
            elif isinstance(block, Text):
                self._text(block)
            elif isinstance(block, Table):
                self._table(block)
            else:
                raise TypeError(f"not a report block: {block!r}")

    def _text(self, block: Text) -> None:
        width = PAGE_W - 2 * MARGIN_X - block.indent
        h = block.size * LINE / 72
        for line in _wrap(block.text, width, block.size, block.mono, block.hanging, block.bold):
            self._need(h)
            x, y = _inch_to_fig(MARGIN_X + block.indent, self._y)
            _put(self._fig, x, y, line, fontsize=block.size, va="top", color=block.color,
                 family=MONO if block.mono else SANS,
                 weight="bold" if block.bold else "normal")
            self._y += h

    def _table(self, t: Table) -> None:
        from matplotlib.lines import Line2D
        from matplotlib.patches import Rectangle

        m = _TableLayout(t)
        cells, widths, right, gap = m.cells, m.widths, m.right, m.gap
        size, line_h, pad = m.size, m.line_h, m.pad
        table_w = m.total_chars * m.size * MONO_EM / 72
        row_height = m.row_height

        def draw_row(texts: list[list[str]], bold: bool, color: str) -> float:
            # monospaced: a row's line is one string, its columns padded with spaces
            n_lines = max(len(c) for c in texts)
            for j in range(n_lines):
                parts = []
                for i, lines in enumerate(texts):
                    cell = lines[j] if j < len(lines) else ""
                    parts.append(cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i]))
                fx, fy = _inch_to_fig(MARGIN_X, self._y + pad + j * line_h)
                _put(self._fig, fx, fy, (" " * gap).join(parts).rstrip(), fontsize=size,
                     family=MONO, va="top", weight="bold" if bold else "normal",
                     color=color)
            return n_lines * line_h + 2 * pad

        header_cells = [[h] for h in t.header]
        show_header = m.show_header
        header_h, caption_h = m.header_h, m.caption_h
        # keep a table that fits on one page together: start it on a fresh page
        whole = m.first_page_height
        if self._fig is not None and whole > self._room() and \
                whole <= PAGE_H - MARGIN_TOP - MARGIN_BOTTOM and \
                self._y > MARGIN_TOP + KEEP_TOGETHER_BELOW:
            self._new_text_page()
        i = 0
        first = True
        while i < len(cells) or first:
            # at least the header and one row on this page
            need = caption_h + header_h + (row_height(cells[i]) if i < len(cells) else 0)
            self._need(need)
            if t.caption:
                lines = m.caption_lines if first else [m.caption_lines[0] + " (continued)"]
                for line in lines:
                    fx, fy = _inch_to_fig(MARGIN_X, self._y)
                    _put(self._fig, fx, fy, line, fontsize=t.size + 1, weight="bold", va="top",
                         family=SANS)
                    self._y += m.caption_line_h
            if show_header:
                draw_row(header_cells, True, "black")
            self._y += header_h
            x0, y0 = _inch_to_fig(MARGIN_X, self._y)
            x1, _ = _inch_to_fig(MARGIN_X + table_w, self._y)
            self._fig.add_artist(Line2D([x0, x1], [y0, y0], color="0.3", linewidth=0.6))
            rows_here = 0
            while i < len(cells) and rows_here < t.max_rows and self._room() >= row_height(cells[i]):
                h = row_height(cells[i])
                warn = bool(t.highlight[i]) if t.highlight is not None else False
                if rows_here % 2 == 1:
                    fx, fy = _inch_to_fig(MARGIN_X - 0.05, self._y + h)
                    self._fig.add_artist(Rectangle((fx, fy), (table_w + 0.1) / PAGE_W, h / PAGE_H,
                                                   color="0.94", zorder=-1, linewidth=0))
                draw_row(cells[i], False, "#a63603" if warn else "black")
                self._y += h
                i += 1
                rows_here += 1
            x0, y0 = _inch_to_fig(MARGIN_X, self._y)
            self._fig.add_artist(Line2D([x0, x1], [y0, y0], color="0.3", linewidth=0.6))
            first = False
            if i < len(cells):
                self._new_text_page()
        self._y += 0.08
        for note in t.notes:
            self._text(Text(note, size=max(t.size - 0.5, 6.5), color="0.25"))
        self._y += 0.12

    # -- figures ---------------------------------------------------------------
    @contextmanager
    def figure(self, title: str, nrows: int = 1, ncols: int = 1,
               caption: str | None = None) -> Iterator[tuple[object, np.ndarray]]:
        """A page holding a grid of axes: ``with report.figure(...) as (fig, axes):``.
        The page is written when the block ends; unused axes are hidden."""
        from matplotlib.figure import Figure

        self.end_page()
        caption_lines = _wrap(caption, PAGE_W - 2 * MARGIN_X, 8, False) if caption else []
        bottom = (0.45 + len(caption_lines) * 8 * LINE / 72) / PAGE_H
        fig = Figure(figsize=(PAGE_W, PAGE_H), layout="constrained")
        fig.get_layout_engine().set(rect=(MARGIN_X / PAGE_W * 0.5, bottom, 1 - MARGIN_X / PAGE_W,
                                          1 - bottom - 0.25 / PAGE_H), w_pad=0.08, h_pad=0.1)
        fig.suptitle(title, fontsize=13, weight="bold", family=SANS, parse_math=False)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
        yield fig, axes
        for ax in axes:
            if not ax.has_data() and not ax.texts:
                ax.set_visible(False)
        for j, line in enumerate(caption_lines):
            _put(fig, MARGIN_X / PAGE_W, (0.45 + (len(caption_lines) - j - 0.2) * 8 * LINE / 72) / PAGE_H,
                 line, fontsize=8, color="0.25", family=SANS)
        self._footer(fig)
        _save_drawn_once(self.pdf, fig)


def _save_drawn_once(pdf, fig) -> None:
    """pdf.savefig(fig), the figure drawn once.  savefig lays out a figure
    that has a layout engine by drawing it whole (the output thrown away),
    then draws it again to keep; laid out here as savefig would (with the
    PDF canvas's text measures) and saved without the engine, it comes out
    the same for half the drawing."""
    import matplotlib
    from matplotlib.backends.backend_pdf import FigureCanvasPdf

    FigureCanvasPdf(fig)
    fig.get_layout_engine().execute(fig)
    # None means "no engine" only while these are off (they default to off)
    with matplotlib.rc_context({"figure.autolayout": False,
                                "figure.constrained_layout.use": False}):
        fig.set_layout_engine(None)
    pdf.savefig(fig)
