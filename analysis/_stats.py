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
at each step (the multinomial splitting property).
"""

from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import pandas as pd

RESAMPLES = 1000
CONFIDENCE = 0.95
NOISY_SPREAD = 0.10     # rep medians spread > 10% of the median: a noisy cell

SUMMARY_STATS = ("unit", "n", "reps", "median", "p90", "p99", "ci_low", "ci_high",
                 "rep_min", "rep_max", "noisy")


class _PooledRanks:
    """Where each run's samples sit among the pooled sorted samples:
    ``below(j)`` counts, per run, its samples among the first j pooled ones
    (memory O(N), not a runs x N table)."""

    def __init__(self, rep_of_sorted: np.ndarray, n_reps: int):
        self.positions = [np.flatnonzero(rep_of_sorted == r) for r in range(n_reps)]
        self.n = rep_of_sorted.size

    def below(self, j: np.ndarray) -> np.ndarray:
        return np.stack([np.searchsorted(p, j) for p in self.positions], axis=-1)

    def sizes(self) -> np.ndarray:
        return np.array([p.size for p in self.positions], dtype=np.int64)


def _order_statistics(ranks: _PooledRanks, draws: np.ndarray, k_low: np.ndarray,
                      k_high: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pooled positions of the k_low-th and k_high-th smallest (0-based)
    draws of each resample (the two middle ones give its median).

    draws[b, r]: how many uniform draws resample b makes from run r's
    samples.  Bisection over pooled positions: at each step every run's
    draws in the current interval split binomially between its halves.
    Both ranks go through one set of splits while they share an interval
    (they belong to the same resample); once they part, their intervals are
    disjoint and, given the counts, independent, so separate draws are exact.
    """
    n_boot = draws.shape[0]
    lo = np.zeros((2, n_boot), dtype=np.int64)
    hi = np.full((2, n_boot), ranks.n, dtype=np.int64)
    count = np.stack([draws, draws]).astype(np.int64)      # (2, B, R)
    k = np.stack([k_low, k_high]).astype(np.int64)          # (2, B)
    for _ in range(int(np.ceil(np.log2(max(ranks.n, 2)))) + 1):
        mid = (lo + hi) // 2
        at_lo = ranks.below(lo)
        in_range = ranks.below(hi) - at_lo                   # (2, B, R)
        below = ranks.below(mid) - at_lo
        p = np.divide(below, in_range, out=np.zeros(in_range.shape), where=in_range > 0)
        left = rng.binomial(count, p)
        together = (lo[0] == lo[1]) & (hi[0] == hi[1])
        left[1] = np.where(together[:, None], left[0], left[1])
        n_left = left.sum(axis=2)
        go_left = k < n_left
        hi = np.where(go_left, mid, hi)
        lo = np.where(go_left, lo, mid)
        count = np.where(go_left[..., None], left, count - left)
        k = np.where(go_left, k, k - n_left)
    return lo[0], lo[1]


def bootstrap_median_ci(values: np.ndarray, groups: np.ndarray, seed: int | Sequence[int] = 0,
                        resamples: int = RESAMPLES,
                        confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Hierarchical-bootstrap interval of the median of values whose
    repetition (run) is groups[i].  Deterministic for a given seed."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    _, rep = np.unique(np.asarray(groups), return_inverse=True)
    n_reps = int(rep.max()) + 1
    order = np.argsort(values, kind="stable")
    pooled = values[order]
    ranks = _PooledRanks(rep[order], n_reps)
    chosen = rng.multinomial(n_reps, np.full(n_reps, 1.0 / n_reps), size=resamples)  # (B, R)
    draws = chosen * ranks.sizes()[None, :]
    total = draws.sum(axis=1)
    lower, upper = _order_statistics(ranks, draws, (total - 1) // 2, total // 2, rng)
    medians = (pooled[lower] + pooled[upper]) / 2
    alpha = (1 - confidence) / 2
    low, high = np.quantile(medians, [alpha, 1 - alpha])
    return float(low), float(high)


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
    rows = []
    grouped = samples.groupby(by, observed=True, sort=True)
    values_all = samples["value"].to_numpy(dtype=np.float64)
    reps_all = samples[rep_col].to_numpy()
    units_all = samples["unit"].astype(str).to_numpy() if "unit" in samples.columns else None
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
        ci_low, ci_high = bootstrap_median_ci(values, rep, _group_seed(seed, key), resamples)
        rep_min, rep_max = float(rep_medians.min()), float(rep_medians.max())
        unit = ""
        if units_all is not None:
            present = [u for u in dict.fromkeys(units_all[index]) if u]
            unit = "/".join(present)
        noisy = bool(rep_max - rep_min > NOISY_SPREAD * abs(median))
        rows.append(key + (unit, int(values.size), int(len(ids)), median, p90, p99,
                           ci_low, ci_high, rep_min, rep_max, noisy))
    out = pd.DataFrame.from_records(rows, columns=columns)
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
