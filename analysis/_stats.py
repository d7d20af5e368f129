"""Medians, tails and their spread.

The 95% confidence interval of a median comes from a hierarchical bootstrap:
resample the repetitions (runs) with replacement, then the samples within
each chosen repetition, and take the median of the pooled resample.  Runs
differ more from each other than samples within a run do (placement, cache
and frequency state, the hypervisor), so resampling samples alone would give
intervals that are far too narrow.

Drawing every resample explicitly costs B x N random numbers per cell.  We
draw the same distribution exactly, in O(B x R x log N): choosing repetition
r m_r times and drawing n_r samples from it each time is m_r * n_r uniform
draws from that run's samples, so the number of draws from run r that land
below any threshold is binomial, and the median's position among the pooled
sorted samples is found by bisection, splitting each run's draws binomially
at each step (the multinomial splitting property).  The bisection follows
the lower of the two middle draws; the upper one, when the resample has an
even size and no draw is left at the lower one's position, is the smallest
of the nearest batch of draws the bisection left above it, which are
uniform over their runs' samples there: one more uniform number per run.
"""

from __future__ import annotations

import os
import zlib
from typing import Sequence

import numpy as np
import pandas as pd

RESAMPLES = 1000
CONFIDENCE = 0.95
NOISY_SPREAD = 0.10     # rep medians spread > 10% of the median: a noisy cell

SUMMARY_STATS = ("unit", "n", "reps", "median", "p90", "p99", "ci_low", "ci_high",
                 "rep_min", "rep_max", "noisy")


# Cells (groups of summarise) are bootstrapped in batches: each bisection
# step is then a few NumPy operations over every cell of the batch, not
# over one cell at a time.  Only the binomial draws stay per cell, from the
# cell's own generator and in the order a cell alone draws them, so a
# cell's interval does not depend on the batch it is in.
BATCH_ENTRIES = 1 << 22     # bound on a batch's count table and per-step arrays (elements)
MAX_THREADS = 8             # batches bootstrapped at once, at most one per CPU


class _Cell:
    """One cell's samples sorted (``pooled``) with the repetition 0..reps-1
    of each (``rep``), and its generator."""

    def __init__(self, values: np.ndarray, rep: np.ndarray, seed: int | Sequence[int]):
        order = np.argsort(values, kind="stable")
        self.pooled = values[order]
        self.rep = rep[order]
        self.n = values.size
        self.reps = int(rep.max()) + 1
        self.sizes = np.bincount(rep, minlength=self.reps)
        # pooled positions run by run, ascending: run r's are by_run[run_start[r]:][:sizes[r]]
        self.by_run = np.argsort(self.rep, kind="stable")
        self.run_start = np.cumsum(self.sizes) - self.sizes
        self.rng = np.random.default_rng(seed)

    def first_draw(self, draws: np.ndarray, before: np.ndarray, among: np.ndarray) -> np.ndarray:
        """For each i: the pooled position of the smallest of draws[i, r]
        uniform draws from the among[i, r] samples of run r that follow its
        first before[i, r] (in the run's own order), over the runs r."""
        u = self.rng.random(draws.shape)
        with np.errstate(divide="ignore"):
            # of m uniform draws from s items the smallest is item floor(s (1 - U^(1/m)))
            j = np.floor(among * -np.expm1(np.log(u) / draws)).astype(np.int64)
        j = np.clip(self.run_start + before + np.minimum(j, among - 1), 0, self.n - 1)
        return np.where(draws > 0, self.by_run[j], self.n).min(axis=1)


class _CountTable:
    """``below(j)`` of a batch of cells: per cell and run, how many of the
    run's samples are among the cell's first j pooled ones, read from a
    table of (N + 1) x runs counts per cell."""

    def __init__(self, cells: list[_Cell], width: int):
        starts = np.cumsum([0] + [c.n + 1 for c in cells])
        table = np.zeros((starts[-1], width), dtype=np.int64)
        for c, start in zip(cells, starts[:-1]):
            table[start + 1 + np.arange(c.n), c.rep] = 1
            np.cumsum(table[start:start + c.n + 1], axis=0, out=table[start:start + c.n + 1])
        self.table = table
        self.starts = starts[:-1]

    def below(self, j: np.ndarray) -> np.ndarray:            # j: (G, B)
        return self.table[self.starts[:, None] + j]         # (G, B, width)


class _PooledRanks:
    """``below(j)`` of one cell too large for a count table: searched in
    each run's positions among the pooled samples (memory O(N))."""

    def __init__(self, cell: _Cell):
        self.positions = [cell.by_run[a:a + n] for a, n in zip(cell.run_start, cell.sizes)]

    def below(self, j: np.ndarray) -> np.ndarray:
        return np.stack([np.searchsorted(p, j) for p in self.positions], axis=-1)


def _order_statistics(cells: list[_Cell], ranks,
                      draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled positions (G, B) of the two middle draws of each resample of
    each cell (they give its median).

    draws[g, b, r]: how many uniform draws resample b of cell g makes from
    run r's samples.  Bisection over pooled positions for the lower middle
    draw: at each step every run's draws in the current interval split
    binomially between its halves.  A cell of N samples takes
    ceil(log2 N) + 1 steps; in a batch's later steps it stands still (no
    draws: its interval holds one position, and mid = lo leaves everything
    as it is).  Each step that goes left leaves the right half's draws
    above for good: the last such batch that is not empty holds the
    smallest draw above the interval, and, given its counts, its draws of
    run r are uniform over run r's samples in it (_Cell.first_draw).
    """
    n_cells, n_boot, width = draws.shape
    total = draws.sum(axis=2)
    k = (total - 1) // 2                        # the lower middle draw's rank in [lo, hi)
    lo = np.zeros((n_cells, n_boot), dtype=np.int64)
    hi = np.broadcast_to(np.array([c.n for c in cells], dtype=np.int64)[:, None], lo.shape)
    # each run's samples below lo and below hi, carried from step to step:
    # the new bounds are the old ones or mid, so one look-up (at mid) per step
    at_lo = np.zeros((n_cells, n_boot, width), dtype=np.int64)
    sizes = np.zeros((n_cells, width), dtype=np.int64)
    for g, c in enumerate(cells):
        sizes[g, :c.reps] = c.sizes
    at_hi = np.broadcast_to(sizes[:, None, :], at_lo.shape)
    count = draws                               # each run's draws in [lo, hi)
    in_range = total                            # and all of them
    above = np.zeros_like(draws)                # the nearest batch above: draws per run,
    above_lo = np.zeros_like(lo)                # and the positions it spans
    above_hi = np.zeros_like(lo)
    steps = [int(np.ceil(np.log2(max(c.n, 2)))) + 1 for c in cells]
    for step in range(max(steps)):
        mid = (lo + hi) // 2
        at_mid = ranks.below(mid)
        p = (at_mid - at_lo) / np.maximum(at_hi - at_lo, 1)
        left = np.zeros_like(count)
        for g, c in enumerate(cells):
            if step < steps[g]:
                left[g, :, :c.reps] = c.rng.binomial(count[g, :, :c.reps], p[g, :, :c.reps])
        n_left = left.sum(axis=2)
        go_left = k < n_left
        right = count - left
        leaves_some = go_left & (n_left < in_range)
        above = np.where(leaves_some[..., None], right, above)
        above_lo = np.where(leaves_some, mid, above_lo)
        above_hi = np.where(leaves_some, hi, above_hi)
        count = np.where(go_left[..., None], left, right)
        at_hi = np.where(go_left[..., None], at_mid, at_hi)
        at_lo = np.where(go_left[..., None], at_lo, at_mid)
        in_range = np.where(go_left, n_left, in_range - n_left)
        k = np.where(go_left, k, k - n_left)
        hi = np.where(go_left, mid, hi)
        lo = np.where(go_left, lo, mid)
    # the upper middle draw: at lo while draws are left there (or the size is odd)
    upper = lo.copy()
    beyond = (total % 2 == 0) & (k + 1 >= in_range)
    before = ranks.below(above_lo)
    among = ranks.below(above_hi) - before
    for g, c in enumerate(cells):
        b = np.flatnonzero(beyond[g])
        if b.size:
            upper[g, b] = c.first_draw(above[g, b, :c.reps], before[g, b, :c.reps],
                                       among[g, b, :c.reps])
    return lo, upper


def _batches(cells: list[_Cell], resamples: int, parts: int = 1) -> list[list[_Cell]]:
    """Consecutive cells whose count table and per-step arrays stay within
    BATCH_ENTRIES, and at least ``parts`` batches when there are as many
    cells; a cell too large for that alone is a batch of its own."""
    out: list[list[_Cell]] = []
    batch: list[_Cell] = []
    rows = width = 0
    most = -(-len(cells) // max(parts, 1))
    for c in cells:
        w = max(width, c.reps)
        if batch and (len(batch) >= most or max((rows + c.n + 1) * w,
                                                 (len(batch) + 1) * resamples * w) > BATCH_ENTRIES):
            out.append(batch)
            batch, rows, w = [], 0, c.reps
        batch.append(c)
        rows, width = rows + c.n + 1, w
    if batch:
        out.append(batch)
    return out


def _bootstrap_cells(cells: list[_Cell], resamples: int = RESAMPLES,
                     confidence: float = CONFIDENCE) -> list[tuple[float, float]]:
    """The hierarchical-bootstrap interval of the median of each cell."""
    alpha = (1 - confidence) / 2
    out = []
    for medians in _bootstrap_medians(cells, resamples):
        low, high = np.quantile(medians, [alpha, 1 - alpha])
        out.append((float(low), float(high)))
    return out


def _bootstrap_medians(cells: list[_Cell], resamples: int) -> list[np.ndarray]:
    """Each cell's ``resamples`` hierarchical-bootstrap medians (what its
    interval is read from; a ratio of two cells' medians is read from two)."""

    def medians_of(batch: list[_Cell]) -> list[np.ndarray]:
        width = max(c.reps for c in batch)
        ranks: _CountTable | _PooledRanks
        if (sum(c.n for c in batch) + len(batch)) * width <= BATCH_ENTRIES:
            ranks = _CountTable(batch, width)
        else:
            ranks = _PooledRanks(batch[0])
        draws = np.zeros((len(batch), resamples, width), dtype=np.int64)
        for g, c in enumerate(batch):
            chosen = c.rng.multinomial(c.reps, np.full(c.reps, 1.0 / c.reps), size=resamples)
            draws[g, :, :c.reps] = chosen * c.sizes[None, :]
        lower, upper = _order_statistics(batch, ranks, draws)
        return [(c.pooled[lower[g]] + c.pooled[upper[g]]) / 2 for g, c in enumerate(batch)]

    # NumPy's binomial draws and array operations release the GIL, so
    # batches on threads use every CPU (the draws are most of the time);
    # each cell draws from its own generator, so the split changes nothing
    workers = min(len(os.sched_getaffinity(0)), MAX_THREADS)
    batches = _batches(cells, resamples, parts=workers if len(cells) >= 2 * workers else 1)
    if len(batches) == 1:
        return medians_of(batches[0])
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(workers) as pool:
        return [m for part in pool.map(medians_of, batches) for m in part]


def bootstrap_medians(cells: Sequence[tuple[np.ndarray, np.ndarray]], seeds: Sequence,
                      resamples: int = RESAMPLES) -> list[np.ndarray]:
    """For each (values, repetition of each value) cell, its ``resamples``
    hierarchical-bootstrap medians (repetitions, then samples within them),
    all cells at once in batches; cell i draws from its own generator
    seeds[i], so its medians do not depend on the other cells."""
    made = []
    for (values, groups), seed in zip(cells, seeds):
        _, rep = np.unique(np.asarray(groups), return_inverse=True)
        made.append(_Cell(np.asarray(values, dtype=np.float64), rep, seed))
    return _bootstrap_medians(made, resamples) if made else []


def bootstrap_median_ci(values: np.ndarray, groups: np.ndarray, seed: int | Sequence[int] = 0,
                        resamples: int = RESAMPLES,
                        confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Hierarchical-bootstrap interval of the median of values whose
    repetition (run) is groups[i].  Deterministic for a given seed."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (np.nan, np.nan)
    _, rep = np.unique(np.asarray(groups), return_inverse=True)
    return _bootstrap_cells([_Cell(values, rep, seed)], resamples, confidence)[0]


def _group_seed(seed: int, key: tuple) -> list[int]:
    """A seed per cell, so a cell's interval does not depend on which other
    cells are summarised with it (the report and `lab show` agree)."""
    return [int(seed), zlib.crc32(repr(tuple(str(k) for k in key)).encode())]


def summarise(samples: pd.DataFrame, by: Sequence[str] = ("family", "variant", "point", "metric"),
              seed: int = 0, resamples: int = RESAMPLES) -> pd.DataFrame:
    """One row per group of ``by``: median, p90, p99 of the pooled samples,
    the 95% CI of the median (hierarchical bootstrap over repetitions, then
    samples), min and max of the per-repetition medians, and ``noisy`` when
    those spread more than 10% of the median.  Repetitions are told apart by
    ``run_id`` (or ``repetition`` if there is no run_id)."""
    by = list(by)
    rep_col = "run_id" if "run_id" in samples.columns else "repetition"
    columns = by + list(SUMMARY_STATS)
    if samples.empty:
        return pd.DataFrame({c: pd.Series(dtype=samples[c].dtype if c in samples.columns else "float64")
                             for c in columns})
    rows, cells = [], []
    grouped = samples.groupby(by, observed=True, sort=True)
    values_all = samples["value"].to_numpy(dtype=np.float64)
    reps_all = samples[rep_col].to_numpy()
    if "unit" in samples.columns:
        # codes, not strings: a string per sample costs more than the statistics
        unit_codes, unit_names = pd.factorize(samples["unit"])
        unit_names = [str(u) for u in unit_names] + [""]       # code -1: no unit
    for key, index in grouped.indices.items():
        key = key if isinstance(key, tuple) else (key,)
        values = values_all[index]
        reps = reps_all[index]
        ids, rep = np.unique(reps, return_inverse=True)
        order = np.lexsort((values, rep))
        bounds = np.searchsorted(rep[order], np.arange(len(ids) + 1))
        sorted_vals = values[order]
        rep_medians = np.array([np.median(sorted_vals[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])
        median = float(np.median(values))
        p90, p99 = (float(x) for x in np.quantile(values, [0.90, 0.99]))
        cells.append(_Cell(values, rep, _group_seed(seed, key)))
        rep_min, rep_max = float(rep_medians.min()), float(rep_medians.max())
        unit = ""
        if "unit" in samples.columns:
            present = [unit_names[c] for c in pd.unique(unit_codes[index])]
            unit = "/".join(u for u in present if u)
        noisy = bool(rep_max - rep_min > NOISY_SPREAD * abs(median))
        # (the columns before the interval, the columns after it)
        rows.append((key + (unit, int(values.size), int(len(ids)), median, p90, p99),
                     (rep_min, rep_max, noisy)))
    intervals = _bootstrap_cells(cells, resamples)      # every cell's at once
    out = pd.DataFrame.from_records(
        [head + ci + tail for (head, tail), ci in zip(rows, intervals)], columns=columns)
    for col in by:
        if isinstance(samples[col].dtype, pd.CategoricalDtype):
            out[col] = pd.Categorical(out[col], categories=samples[col].cat.categories)
    return out.reset_index(drop=True)


def bootstrap_runs_median_ci(values: np.ndarray, seed: int | Sequence[int] = 0,
                             resamples: int = RESAMPLES,
                             confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Bootstrap interval of the median of one value per run (a run's
    throughput, a counter): resample the runs with replacement.  With three
    runs it is their min..max; it narrows as repetitions are added."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (np.nan, np.nan)
    if values.size == 1:
        return (float(values[0]), float(values[0]))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(resamples, values.size))
    medians = np.median(values[draws], axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(medians, [alpha, 1 - alpha])
    return float(low), float(high)
