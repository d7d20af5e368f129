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
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from analysis._results import Run

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PAGE_W, PAGE_H = 11.69, 8.27            # A4 landscape, inches
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 0.6, 0.55, 0.65
SANS, MONO = "DejaVu Sans", "DejaVu Sans Mono"
MONO_EM = 0.602                          # DejaVu Sans Mono advance width / em
SANS_EM = 0.54                           # a generous average for DejaVu Sans text
LINE = 1.38                              # line height / font size
MIN_TABLE_SIZE = 5.5
ROWS_PER_PAGE = 25
# inches: a table starting lower moves to a new page if that keeps it whole
KEEP_TOGETHER_BELOW = 2.5
FOOT_SIZE = 7


def pdf_style():
    """The rc settings every PDF of the lab is drawn with (the report's,
    `lab compare --pdf`): fonttype 42 embeds TrueType fonts, so pdftotext
    and readers find the text."""
    import matplotlib
    return matplotlib.rc_context({"pdf.fonttype": 42, "ps.fonttype": 42,
                                  "font.family": "DejaVu Sans", "axes.titlesize": 10,
                                  "axes.labelsize": 9, "xtick.labelsize": 8,
                                  "ytick.labelsize": 8})


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
    goto: int | None = None              # links to this page (footer numbers): Report.flow_front


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

        # (measure, dpi, font) -> ({character: (ascent, descent)}, the font's);
        # a FontProperties hashes slowly, so once a line, not once a character
        _measured: dict[tuple, tuple[dict[str, tuple[float, float]], tuple[float, float]]] = {}

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
            got = self._measured.get(key)
            if got is None:
                ft = font_manager.get_font(font_manager.findfont(prop))
                table, head = ft.get_sfnt_table("OS/2"), ft.get_sfnt_table("head")
                # findfont() gives TrueType / OpenType fonts: both tables are there
                assert table is not None and head is not None
                scale = 1 / head["unitsPerEm"] * prop.get_size_in_points() * dpi / 72
                # a key that nobody changes later
                got = self._measured[key[:2] + (prop.copy(),)] = (
                    {}, (table["sTypoAscender"] * scale, -table["sTypoDescender"] * scale))
            chars, (ascent, descent) = got
            box_of = None
            for ch in set(self.get_text()):
                box = chars.get(ch)
                if box is None:
                    if box_of is None:
                        box_of = _pdf_char_box(renderer, measure, prop)
                    if box_of is not None:
                        box = chars[ch] = box_of(ch)
                    else:
                        _, h, d = measure(ch, prop, ismath=False)
                        box = chars[ch] = (h - d, d)
                if box[0] > ascent:
                    ascent = box[0]
                if box[1] > descent:
                    descent = box[1]
            return ascent, descent

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
            write = _pdf_text_writer()
            if write is None or not write(renderer, gc, x, y, self.get_text(),
                                          self.get_fontproperties(), self):
                renderer.draw_text(gc, x, y, self.get_text(), self.get_fontproperties(), 0,
                                   ismath=False, mtext=self)
            gc.restore()
            renderer.close_group("text")
            self.stale = False

    return _Line


def _pdf_char_box(renderer, measure, prop):
    """What _Line._extent takes from the PDF renderer's
    get_text_width_height_descent(ch, prop, ismath=False) for a character,
    (height - descent, descent), with the font looked up once for a line's
    new characters rather than once for each (findfont, clear, set_size are
    most of what a character's measure costs).  A function of the character,
    or None where that measure is not matplotlib 3.11's own for TrueType
    (another version or renderer, AFM fonts): then _extent asks it."""
    import matplotlib as mpl
    if tuple(mpl.__version_info__[:2]) != (3, 11):
        return None
    try:
        from matplotlib.backends._backend_pdf_ps import RendererPdfPsBase
        from matplotlib.ft2font import LoadFlags
    except ImportError:
        return None
    if getattr(measure, "__func__", None) is not RendererPdfPsBase.get_text_width_height_descent \
            or mpl.rcParams[measure.__self__._use_afm_rc_name]:
        return None
    font = measure.__self__._get_font_ttf(prop)
    scale = 1 / 64

    def box(ch: str) -> tuple[float, float]:
        # as get_text_width_height_descent, to the same floats
        font.set_text(ch, 0.0, flags=LoadFlags.NO_HINTING)
        _, h = font.get_width_height()
        d = font.get_descent()
        h *= scale
        d *= scale
        return h - d, d

    return box


@functools.cache
def _pdf_text_writer():
    """What RendererPdf.draw_text writes for a line of TrueType text
    (pdf.fonttype 42), written for less: a function (renderer, gc, x, y,
    text, prop, mtext) -> bool, False when it wrote nothing and draw_text
    must draw the line; None when this matplotlib is not the one it copies.

    draw_text lays a line out (libraqm: glyphs, kerning, fallback fonts),
    then for every glyph loads it into FreeType (its outline is never used
    here), records it in the font subset and writes its code and kerning
    through pdfRepr: the report's text pages are some 180,000 glyphs, and
    that per-glyph work was most of the time the report took.  Here the
    operators and bytes written are the same (the PDF is byte for byte what
    draw_text makes), but a glyph is recorded once per PDF file and its code
    and a kerning value are escaped once.

    The layout itself costs some 10 us a character (FT2Font._layout loads
    each glyph too), and for the report's fonts and text it is known
    without it: see _plain_layout.

    It copies draw_text of matplotlib 3.11 (backend_pdf internals: the
    character tracker, fontName, _fill, FT2Font._layout), so it only runs
    under 3.11 and only for the draw_text it copies: any other version, a
    subclass that overrides draw_text, Type 3 or core fonts, or a link (gc
    url) leave the line to draw_text."""
    import math
    import weakref

    import matplotlib as mpl
    if tuple(mpl.__version_info__[:2]) != (3, 11):
        return None
    try:
        from matplotlib.backends import backend_pdf
        from matplotlib.font_manager import FontPath
        from matplotlib.ft2font import LoadFlags
        Op, fill, draw_text = backend_pdf.Op, backend_pdf._fill, backend_pdf.RendererPdf.draw_text
        pdf_repr, str_escapes = backend_pdf.pdfRepr, backend_pdf._str_escapes
    except (ImportError, AttributeError):
        return None
    plain = _plain_layout(LoadFlags.NO_HINTING)

    class Raw:
        """Bytes that pdfRepr passes through as they are."""
        __slots__ = ("data",)

        def __init__(self, data: bytes):
            self.data = data

        def pdfRepr(self) -> bytes:
            return self.data

    # draw_text's rotation matrix for an angle of 0, to the same floats
    rot = (math.cos(0.0), math.sin(0.0), -math.sin(0.0), math.cos(0.0))
    # per PDF file (its character tracker): (font path, char, glyph) ->
    # (subset, escaped code); the file writes its fonts from its tracker
    tracked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    kerns: dict = {}                    # fontsize -> {prev_kern: pdfRepr of the TJ kern}

    def track(tracker, ft, char, glyph):
        """(subset, escaped code) of a glyph, recorded in the file's subset."""
        subset, charcode = tracker.track_glyph(ft, char, glyph)
        code = charcode.to_bytes(2, "big").decode("latin-1").translate(str_escapes)
        return subset, code.encode("latin-1")

    def laid_out(font, s, mtext):
        for item in font._layout(s, LoadFlags.NO_HINTING, features=mtext.get_fontfeatures(),
                                 language=mtext.get_language()):
            yield item.ft_object, item.char, item.glyph_index, item.x, item.y, item.prev_kern

    def write(renderer, gc, x, y, s, prop, mtext) -> bool:
        # the PDF renderer's own state (its file, fonts, graphics context):
        # matplotlib's private API, typed as what it is, unknown
        pdf: Any = getattr(renderer.draw_text, "__self__", None)
        if (getattr(renderer.draw_text, "__func__", None) is not draw_text
                or not hasattr(pdf, "file")
                or mpl.rcParams["pdf.fonttype"] != 42 or mpl.rcParams["pdf.use14corefonts"]
                or gc.get_url() is not None):
            return False
        file = pdf.file
        tracker = file._character_tracker
        glyphs = tracked.get(tracker)
        if glyphs is None:
            glyphs = tracked[tracker] = {}
        output = file.output
        pdf.check_gc(gc, gc._rgb)
        fontsize = prop.get_size_in_points()
        font = pdf._get_font_ttf(prop)
        items = plain(font, fontsize, s, mtext)
        if type(items) is tuple:
            # one font from x 0, so one TJ; unless a glyph is not in the
            # font's first subset (draw_text would switch fonts there)
            char_glyph, char_kerns = items
            code_of = {}
            for ch in dict.fromkeys(s):
                key = (font.fname, font.face_index, ch, char_glyph[ch])
                got = glyphs.get(key)
                if got is None:
                    got = glyphs[key] = track(tracker, font, ch, char_glyph[ch])
                if got[0] != 0:
                    break
                code_of[ch] = got[1]
            else:
                output(Op.gsave)
                output(*rot, x, y, Op.concat_matrix)
                output(Op.begin_text)
                output(file.fontName(FontPath(font.fname, font.face_index), 0), fontsize,
                       Op.selectfont)
                pdf._setup_textpos(0.0, 0, 0, 0, 0, 0)
                size_kerns = kerns.setdefault(fontsize, {})
                chunk: list[bytes] = []     # TJ operands: kerns, and escaped codes between them
                codes: list[bytes] = []
                for ch, prev_kern in zip(s, char_kerns):
                    if prev_kern:
                        if codes:
                            chunk.append(b"(" + b"".join(codes) + b")")
                            codes = []
                        kern = size_kerns.get(prev_kern)
                        if kern is None:
                            kern = size_kerns[prev_kern] = pdf_repr(-1000 * prev_kern / fontsize)
                        chunk.append(kern)
                    codes.append(code_of[ch])
                if codes:
                    chunk.append(b"(" + b"".join(codes) + b")")
                output(Raw(fill([b"[", *chunk, b"]"])), Op.showkern)
                output(Op.end_text)
                output(Op.grestore)
                return True
            items = None
        items = items or laid_out(font, s, mtext)
        output(Op.gsave)
        output(*rot, x, y, Op.concat_matrix)
        output(Op.begin_text)
        chunk = []
        codes = []

        def show():
            if codes:
                chunk.append(b"(" + b"".join(codes) + b")")
                codes.clear()
            if chunk:
                output(Raw(fill([b"[", *chunk, b"]"])), Op.showkern)
                chunk.clear()

        prev_font = None
        prev_start_x = 0
        for ft, char, glyph, item_x, item_y, prev_kern in items:
            key = (ft.fname, ft.face_index, char, glyph)
            got = glyphs.get(key)
            if got is None:
                got = glyphs[key] = track(tracker, ft, char, glyph)
            subset, code = got
            if (ft, subset) != prev_font:
                show()
                output(file.fontName(FontPath(ft.fname, ft.face_index), subset), fontsize,
                       Op.selectfont)
                pdf._setup_textpos(item_x, 0, 0, prev_start_x, 0, 0)
                prev_font = (ft, subset)
                prev_start_x = item_x
            if item_y:
                show()
                output(item_y, Op.textrise)
            if prev_kern:
                size_kerns = kerns.setdefault(fontsize, {})
                kern = size_kerns.get(prev_kern)
                if kern is None:
                    kern = size_kerns[prev_kern] = pdf_repr(-1000 * prev_kern / fontsize)
                if codes:
                    chunk.append(b"(" + b"".join(codes) + b")")
                    codes.clear()
                chunk.append(kern)
            codes.append(code)
            if item_y:
                show()
                output(0, Op.textrise)
        show()
        output(Op.end_text)
        output(Op.grestore)
        return True

    return write


def _plain_layout(no_hinting):
    """FT2Font._layout of a line without calling it, where its outcome is
    known from the font's tables: printable ASCII in matplotlib's own DejaVu
    fonts.  There each character is its cmap glyph, on the baseline, and
    moves the next one by its rounded advance plus, in DejaVu Sans, a pair
    kerning (GPOS kern: PairPos of the first glyph's advance only, no
    contextual lookups).  Of GSUB's default features only two touch ASCII:
    ccmp (i and j when a combining mark follows: never in ASCII) and, in
    DejaVu Sans, liga (f before f, i or l: such lines are laid out for
    real).  DejaVu Sans Mono has no kerning at all.  So a line's layout is
    known from its character pairs: what the next character's x moves by,
    and the kerning draw_text writes before it (the rounding of those).

    Those come from real layouts, per font and size: for DejaVu Sans Mono,
    one of all the printable characters (the step after a character is its
    own); for DejaVu Sans, the lines drawn so far (a line with a pair not
    yet seen is laid out for real, and its pairs are kept).  A real layout
    that does not show what the tables say (a glyph per character, the
    font's own, none missing, on the baseline; a pair that moves two ways)
    leaves the font and size to the real layout from then on.

    Returns a function (font, fontsize, text, mtext) -> None (not known),
    a list of the items (font, char, glyph, x, y, prev_kern) of a real
    layout, or a tuple ({char: glyph}, [prev_kern of each character]): the
    glyphs all the font's own, on the baseline, the first at x 0, and where
    draw_text would write the next one only its kerning before it matters."""
    import os

    from matplotlib import cbook

    def real(name):
        return os.path.realpath(cbook._get_data_path("fonts", "ttf", name))

    mono = {real(name) for name in ("DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf")}
    kerned = {real(name) for name in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")}
    kinds: dict = {}                # font file -> "mono", "kerned" or None
    printable = "".join(map(chr, range(0x20, 0x7f)))
    # (font, fontsize) -> ({char: glyph}, {(char, next char): (step, kern)}), or None
    known: dict = {}

    def learn(font, text, items, glyphs, pairs) -> bool:
        """Keep what a real layout of text shows; False if it is not the
        layout the tables describe."""
        if len(items) != len(text) or items[0].x != 0 or items[0].prev_kern != 0:
            return False
        for n, item in enumerate(items):
            ch = text[n]
            if (item.ft_object is not font or item.char != ch or item.y
                    or not item.glyph_index or glyphs.setdefault(ch, item.glyph_index)
                    != item.glyph_index or item.glyph_index != font.get_char_index(ord(ch))):
                return False
            if n:
                step = (item.x - items[n - 1].x, item.prev_kern)
                if pairs.setdefault((text[n - 1], ch), step) != step:
                    return False
        return True

    def start(font, fontsize, kind):
        glyphs: dict = {}
        pairs: dict = {}
        if kind == "mono":
            # every pair of the printable characters, from one line of them
            text = printable + printable[0]
            items = list(font._layout(text, no_hinting, features=None, language=None))
            if not learn(font, text, items, glyphs, {}):
                return None
            steps = {a.char: (b.x - a.x, b.prev_kern) for a, b in zip(items, items[1:])}
            pairs = {(a, b): steps[a] for a in printable for b in printable}
        return glyphs, pairs

    def layout(font, fontsize, s, mtext):
        kind = kinds.get(font.fname, 0)
        if kind == 0:
            path = os.path.realpath(font.fname)
            kind = kinds[font.fname] = None if font.face_index else \
                "mono" if path in mono else "kerned" if path in kerned else None
        if kind is None or not (s.isascii() and s.isprintable()) \
                or mtext.get_fontfeatures() is not None or mtext.get_language() is not None \
                or (kind == "kerned" and ("ff" in s or "fi" in s or "fl" in s)):
            return None
        key = (font, fontsize)
        state = known[key] if key in known else known.setdefault(key, start(font, fontsize, kind))
        if state is None:
            return None
        glyphs, pairs = state
        kerns = []
        kern = 0.0
        prev = None
        for ch in s:
            if prev is not None:
                step = pairs.get((prev, ch))
                if step is None:
                    break
                kern = step[1]
            if ch not in glyphs:
                break
            kerns.append(kern)
            prev = ch
        else:
            return glyphs, kerns
        # a pair not seen yet: the real layout, which shows it
        items = list(font._layout(s, no_hinting, features=None, language=None))
        if not learn(font, s, items, glyphs, pairs):
            known[key] = None
        return [(item.ft_object, item.char, item.glyph_index, item.x, item.y, item.prev_kern)
                for item in items]

    return layout


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

    def __init__(self, run: Run, pdf, title: str, front_page: bool = False):
        """``front_page``: a page will go first (flow_front), so the pages
        written before it are numbered from 2."""
        self.run = run
        self.pdf = pdf
        self.title = title
        self.pages = 1 if front_page else 0
        self._fig: Figure | None = None        # the text page being filled
        self._y = 0.0
        self._links: list[tuple[list[float], int]] = []   # (rect in points, page) of Text.goto

    # -- pages ---------------------------------------------------------------
    def _footer(self, fig) -> None:
        self.pages += 1
        _put(fig, MARGIN_X / PAGE_W, 0.3 / PAGE_H, self.title, fontsize=FOOT_SIZE, color="0.4",
             family=SANS)
        _put(fig, 1 - MARGIN_X / PAGE_W, 0.3 / PAGE_H, f"page {self.pages}", fontsize=FOOT_SIZE,
             color="0.4", ha="right", family=SANS)

    def _new_text_page(self) -> Figure:
        from matplotlib.figure import Figure
        self.end_page()
        fig = self._fig = Figure(figsize=(PAGE_W, PAGE_H))
        self._y = MARGIN_TOP
        return fig

    def end_page(self) -> None:
        """Finish the current text page (the next block starts a new one)."""
        if self._fig is not None:
            self._footer(self._fig)
            self.pdf.savefig(self._fig)
            self._fig = None

    def _room(self) -> float:
        return PAGE_H - MARGIN_BOTTOM - self._y

    def _need(self, height: float) -> Figure:
        """The text page, with room for ``height`` (a new one if not)."""
        if self._fig is None or self._room() < height:
            return self._new_text_page()
        return self._fig

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
            if block.goto is not None:
                em = (MONO_EM if block.mono else SANS_EM) * (1.12 if block.bold else 1.0)
                x0, top = (MARGIN_X + block.indent) * 72, (PAGE_H - self._y) * 72
                self._links.append(([x0, top - h * 72, x0 + len(line) * block.size * em, top],
                                    block.goto))
            self._y += h

    def flow_front(self, blocks: Sequence[Block]) -> bool:
        """Flow ``blocks`` onto the page that goes first in the PDF (made with
        Report(front_page=True)): it is written last, when every page a
        Text.goto names exists, then moved to the front of the file's page
        list, each Text.goto made a link to its page.  matplotlib's PDF
        backend offers URL links only, so the page list and the GoTo
        annotations are its PdfFile's (pageList, _annotations); a PdfPages
        without them leaves the page last, unlinked, and this returns False.
        The page must fit on one page: the others were numbered from 2."""
        self.end_page()
        file = getattr(self.pdf, "_file", None)
        page_list = getattr(file, "pageList", None)
        annotations = getattr(file, "_annotations", None)
        before = len(page_list) if isinstance(page_list, list) else 0
        numbered, self.pages = self.pages, 0
        self._links = []
        self.flow(blocks)
        self.end_page()
        self.pages = numbered
        links, self._links = self._links, []
        if not isinstance(page_list, list) or not isinstance(annotations, list):
            return False
        from matplotlib.backends.backend_pdf import Name
        # before the move, the page numbered N (from 2) is page_list[N - 2]
        annotations[-1][1].extend(
            {"Type": Name("Annot"), "Subtype": Name("Link"), "Rect": rect, "Border": [0, 0, 0],
             "Dest": [page_list[page - 2], Name("Fit")]}
            for rect, page in links if 2 <= page < before + 2)
        page_list[:] = page_list[before:] + page_list[:before]
        return True

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
            fig = self._need(need)
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
            fig.add_artist(Line2D([x0, x1], [y0, y0], color="0.3", linewidth=0.6))
            rows_here = 0
            while i < len(cells) and rows_here < t.max_rows and self._room() >= row_height(cells[i]):
                h = row_height(cells[i])
                warn = bool(t.highlight[i]) if t.highlight is not None else False
                if rows_here % 2 == 1:
                    fx, fy = _inch_to_fig(MARGIN_X - 0.05, self._y + h)
                    fig.add_artist(Rectangle((fx, fy), (table_w + 0.1) / PAGE_W, h / PAGE_H,
                                                   color="0.94", zorder=-1, linewidth=0))
                draw_row(cells[i], False, "#a63603" if warn else "black")
                self._y += h
                i += 1
                rows_here += 1
            x0, y0 = _inch_to_fig(MARGIN_X, self._y)
            fig.add_artist(Line2D([x0, x1], [y0, y0], color="0.3", linewidth=0.6))
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
        from matplotlib.layout_engine import ConstrainedLayoutEngine

        self.end_page()
        caption_lines = _wrap(caption, PAGE_W - 2 * MARGIN_X, 8, False) if caption else []
        bottom = (0.45 + len(caption_lines) * 8 * LINE / 72) / PAGE_H
        layout = ConstrainedLayoutEngine(rect=(MARGIN_X / PAGE_W * 0.5, bottom,
                                               1 - MARGIN_X / PAGE_W, 1 - bottom - 0.25 / PAGE_H),
                                         w_pad=0.08, h_pad=0.1)
        fig = Figure(figsize=(PAGE_W, PAGE_H), layout=layout)
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
