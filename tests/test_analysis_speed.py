"""analysis: what makes `lab show` and `lab report` fast must not change
what they say.  The batched bootstrap gives every cell the interval it gets
alone and draws the hierarchical bootstrap's distribution; the report's
text lines and its figures drawn once come out as matplotlib would draw them."""

from __future__ import annotations

import re
import zlib

import numpy as np
import pandas as pd
import pytest

from analysis import _stats
from analysis._stats import _group_seed, bootstrap_median_ci, summarise
from analysis._views import cached_per_run, is_headline, per_run


def _cells_frame(rng: np.random.Generator) -> pd.DataFrame:
    """Cells of different sizes, repetition counts, ties and units."""
    rows = []
    shapes = {"a": (3, 300, False), "b": (2, 7, True), "c": (5, 41, True), "d": (1, 12, False),
              "e": (3, 1, False)}
    for cell, (reps, n, ties) in shapes.items():
        for r in range(reps):
            v = rng.lognormal(np.log(100) + 0.1 * r, 0.4, n)
            rows += [(cell, f"run{cell}{r}", float(np.round(x / 10) if ties else x)) for x in v]
    frame = pd.DataFrame(rows, columns=["variant", "run_id", "value"])
    frame["unit"] = "ns"
    return frame


def test_batched_bootstrap_gives_each_cell_its_own_interval():
    """summarise() bootstraps all cells together; each cell still gets what
    bootstrap_median_ci() gives it alone, with its own seed, whatever else
    is in the batch, and whether its ranks come from the count table or,
    for a cell too large for one, from searching each run's positions."""
    frame = _cells_frame(np.random.default_rng(5))
    together = summarise(frame, by=("variant",), seed=3)
    for r in together.itertuples(index=False):
        cell = frame[frame["variant"] == r.variant]
        alone = bootstrap_median_ci(cell["value"].to_numpy(), cell["run_id"].to_numpy(),
                                    _group_seed(3, (r.variant,)))
        assert (r.ci_low, r.ci_high) == alone
        assert r.ci_low <= r.median <= r.ci_high
    assert summarise(frame[frame["variant"] != "a"], by=("variant",), seed=3)[
        ["ci_low", "ci_high"]].equals(together[together["variant"] != "a"][
            ["ci_low", "ci_high"]].reset_index(drop=True))


def test_bootstrap_is_the_same_in_batches_of_any_size(monkeypatch):
    frame = _cells_frame(np.random.default_rng(6))
    want = summarise(frame, by=("variant",))
    for entries in (4000, 1):        # small batches; then every cell alone, no count table
        monkeypatch.setattr(_stats, "BATCH_ENTRIES", entries)
        pd.testing.assert_frame_equal(summarise(frame, by=("variant",)), want)


def test_bootstrap_of_even_sizes_and_ties_matches_explicit_resampling():
    """The upper middle draw of an even resample comes from the nearest batch
    of draws above the lower one (not from a second bisection): with many
    ties and even sizes the intervals still match explicit resampling."""
    rng = np.random.default_rng(12)
    reps = [rng.integers(0, 12, 40).astype(float), rng.integers(3, 15, 60).astype(float),
            rng.integers(0, 20, 8).astype(float), rng.integers(2, 9, 30).astype(float)]
    values = np.concatenate(reps)
    groups = np.concatenate([np.full(len(r), i) for i, r in enumerate(reps)])
    draw = np.random.default_rng(2)
    explicit = []
    for _ in range(20000):
        chosen = draw.integers(0, len(reps), len(reps))
        pool = np.concatenate([reps[c][draw.integers(0, len(reps[c]), len(reps[c]))]
                               for c in chosen])
        explicit.append(np.median(pool))
    explicit = np.asarray(explicit)
    got = np.array([bootstrap_median_ci(values, groups, seed=s, resamples=4000,
                                        confidence=c)
                    for s, c in ((1, 0.5), (2, 0.8), (3, 0.95))])
    want = np.array([np.quantile(explicit, [(1 - c) / 2, (1 + c) / 2]) for c in (0.5, 0.8, 0.95)])
    # the medians take few values here: a bound is right or one value off
    assert np.abs(got - want).max() <= 0.5 + 1e-9


def test_per_run_computes_once_and_hands_out_copies():
    calls = []

    @per_run
    def table(run, family: str, seed: int = 0) -> pd.DataFrame:
        calls.append((family, seed))
        return pd.DataFrame({"x": [1, 2]})

    class FakeRun:
        samples = runs = metrics = counters = pd.DataFrame()

    run = FakeRun()
    a = table(run, "f")
    a["y"] = 0                      # a caller's column is its own
    b = table(run, "f", seed=0)
    assert list(b.columns) == ["x"] and calls == [("f", 0)]
    table(run, "f", 1)
    assert calls == [("f", 0), ("f", 1)]
    assert cached_per_run(run, "analysis", ("k",), lambda: 5) == 5


def test_is_headline_by_codes_or_strings():
    class FakeRun:
        families = {"fam": {"variants": {"v1": {"headline": "m1"}, "v2": {"headline": "m2"}}}}

    frame = pd.DataFrame({"variant": ["v1", "v1", "v2", "v2", "v3"],
                          "metric": ["m1", "m2", "m1", "m2", "m1"]})
    want = [True, False, False, True, False]
    assert is_headline(FakeRun(), "fam", frame).tolist() == want
    cats = frame.astype({"variant": "category", "metric": "category"})
    assert is_headline(FakeRun(), "fam", cats).tolist() == want


# -- the PDF ---------------------------------------------------------------------------

def _streams(path) -> list[bytes]:
    data = open(path, "rb").read()
    out = []
    for m in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S):
        try:
            out.append(zlib.decompress(m.group(1)))
        except zlib.error:
            out.append(m.group(1))
    return out


LINES = [("  variant  point   n   median [ns]  p90 [ns]", "DejaVu Sans Mono", {}),
         ("A heading, bold", "DejaVu Sans", {"weight": "bold", "fontsize": 15}),
         ("   ", "DejaVu Sans Mono", {}),
         ("----", "DejaVu Sans Mono", {}),
         ("a reason with $x$ in it", "DejaVu Sans", {"color": "#a63603"}),
         ("unicode: µs, ≤, é, →", "DejaVu Sans", {}),
         ("|[({yjgpq})]|", "DejaVu Sans Mono", {"fontsize": 5.5}),
         ("page 7", "DejaVu Sans", {"ha": "right"})]


@pytest.mark.parametrize("va", ["top", "baseline"])
def test_report_lines_are_drawn_as_fig_text_draws_them(tmp_path, va):
    """_put's lines, measured a character at a time, land exactly where
    fig.text puts them: the PDF pages are byte for byte the same."""
    pytest.importorskip("matplotlib")
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    from analysis._pages import _put

    def page(put, path):
        with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
            fig = Figure(figsize=(11.69, 8.27))
            for i, (text, family, kw) in enumerate(LINES):
                put(fig, 0.05 + 0.9 * (kw.get("ha") == "right"), 0.95 - 0.1 * i, text,
                    family=family, **{"fontsize": 8.5, "va": va, **kw})
            pdf.savefig(fig)

    page(lambda fig, x, y, text, **kw: fig.text(x, y, text, parse_math=False, **kw),
         tmp_path / "text.pdf")
    page(_put, tmp_path / "put.pdf")
    assert _streams(tmp_path / "put.pdf") == _streams(tmp_path / "text.pdf")


def test_figure_pages_drawn_once_are_the_same(tmp_path):
    """A figure page laid out by hand and drawn once is the page savefig
    draws twice (the layout's draw, then the kept one)."""
    pytest.importorskip("matplotlib")
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    from analysis import plots
    from analysis._pages import _save_drawn_once

    def page(save, path):
        rng = np.random.default_rng(1)
        with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
            fig = Figure(figsize=(11.69, 8.27), layout="constrained")
            fig.suptitle("a figure page")
            axes = fig.subplots(2, 1)
            plots.cdf_curves(axes[0], [("one", rng.lognormal(3, 0.5, 500), {}),
                                       ("two", rng.lognormal(3.5, 0.2, 300), {})],
                             xlabel="latency [ns]")
            axes[1].bar(["a", "b"], [3, 5])
            axes[1].set_title("bars")
            save(pdf, fig)

    page(lambda pdf, fig: pdf.savefig(fig), tmp_path / "twice.pdf")
    page(_save_drawn_once, tmp_path / "once.pdf")
    assert _streams(tmp_path / "once.pdf") == _streams(tmp_path / "twice.pdf")
