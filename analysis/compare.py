"""Before and after: two or more stored runs compared cell by cell (issue 16).

For every (family, variant, point, metric) the runs share, from the
user-side samples (analysis._views.user_samples; the headline metric of
each variant unless every metric is asked for):

- each run's median, and the ratio of each run's median to the first's
  with its 95% interval: both sides resampled independently by the
  report's hierarchical bootstrap (repetitions, then samples within them;
  analysis._stats.bootstrap_medians), the interval read from the ratios
  of the resampled medians;
- a Mann-Whitney U test of each run's pooled samples against the first's
  (two-sided, normal approximation with tie and continuity corrections),
  Holm-corrected over every row of the comparison.  Samples within one run
  are not independent (a run's placement and cache state are shared), so
  the test alone is optimistic; the verdict also needs the bootstrap
  interval, which resamples repetitions, to exclude 1;
- a verdict: ``faster`` / ``slower`` when told apart (corrected p < 0.05
  and the interval excludes 1), else ``not told apart``; higher is better
  only for rates (a unit ending in ``/s``);
- flags: ``noisy`` (either side's repetition medians spread more than 10%
  of its median: the summaries' rule) and ``bimodal`` (either side's
  samples split in two modes: see BIMODAL_* below);
- the kernel view's differences where both sides have one (switches/op,
  syscalls/op, punts/op, wake-to-run p50: analysis._kernel.kernel_view_table).

Beside the rows: the cells some runs lack (listed, never dropped), and the
environment fingerprint keys (manifest ``environment``, and ``tuning`` when
the manifest records one) whose values differ.  A *side* is one run, or a
group of runs pooled as repetitions (``lab compare --by KEY``).

No matplotlib here: the forest plot is analysis.sections.compare.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from analysis._kernel import kernel_view_table
from analysis._results import Run
from analysis._stats import CONFIDENCE, NOISY_SPREAD, RESAMPLES, bootstrap_medians
from analysis._views import is_headline, user_samples

ALPHA = 0.05                # family-wise error rate of the Holm-corrected tests
FASTER, SLOWER, NOT_TOLD_APART = "faster", "slower", "not told apart"
# bimodal: in at least half of a side's repetitions, the best split of the
# log samples in two (the 2-means split, Otsu's threshold) leaves at least
# BIMODAL_MIN_SHARE of them on each side, the parts' medians differ by
# BIMODAL_MIN_GAP, and Ashman's D between the parts, sqrt(2) |m1 - m2| /
# sqrt(s1^2 + s2^2), exceeds BIMODAL_D.  For a hard split D is 2.7 on one
# normal distribution and 3.5 on a uniform one: 4 asks for two modes about
# four standard deviations apart.  The share keeps a long tail (a few slow
# samples) from counting as a mode; the gap keeps two clusters of nearly
# equal values (a discrete measure) from it.
BIMODAL_MIN_SHARE = 0.10
BIMODAL_D = 4.0
BIMODAL_MIN_GAP = 0.10
# the kernel view's columns set beside each row: kernel_view_table column, short name
KERNEL_DIFFS = (("switches_per_op", "switches/op"), ("syscalls_per_op", "syscalls/op"),
                ("punts_per_op", "punts/op"), ("wake_to_run_p50_ns", "wake p50 [ns]"))
# fingerprint keys that are readings of the moment, not of the machine: they
# differ between any two runs and say nothing about why numbers changed
VOLATILE_KEYS = ("noise.", "clock.python_read_cost", "cpu.mhz")
CELL = ["family", "variant", "point", "metric"]
# the rows' columns, in order (the CSV and JSON exports write exactly these)
ROW_COLUMNS = (CELL + ["unit", "baseline", "run", "reps_baseline", "reps", "median_baseline",
                       "median", "ratio", "ci_low", "ci_high", "p", "p_holm", "verdict",
                       "noisy", "bimodal"]
               + [f"d_{column}" for column, _ in KERNEL_DIFFS])


class CompareError(ValueError):
    """Runs that cannot be compared; the message says why, in one line."""


@dataclass
class Side:
    """One side of a comparison: a run, or a group of runs pooled as repetitions."""

    label: str
    runs: list[Run]


@dataclass
class Comparison:
    sides: list[str]
    rows: pd.DataFrame                      # ROW_COLUMNS, one per cell and non-first side
    only_in: pd.DataFrame                   # CELL + "present_in": cells some sides lack
    environment: list[tuple[str, list[Any]]]    # (key, its value on each side) that differ
    resamples: int = RESAMPLES
    notes: list[str] = field(default_factory=list)

    def slower_than(self, percent: float) -> pd.DataFrame:
        """The rows told apart as slower than the first side by more than
        ``percent`` percent (what `lab compare --fail-above` fails on)."""
        r = self.rows
        return r[(r["verdict"] == SLOWER) & (slowdown(r["ratio"], r["unit"]) > percent / 100)]


def higher_is_better(unit) -> bool:
    return str(unit).endswith("/s")


def slowdown(ratio, unit):
    """How much slower than the first side a ratio says (0.5: 50% slower):
    ratio - 1 for times, 1 / ratio - 1 for rates (element-wise on Series)."""
    if isinstance(ratio, pd.Series):
        rate = unit.map(higher_is_better).to_numpy(dtype=bool)
        r = ratio.to_numpy(dtype=float)
        with np.errstate(divide="ignore"):
            return pd.Series(np.where(rate, 1 / r - 1, r - 1), index=ratio.index)
    return 1 / ratio - 1 if higher_is_better(unit) else ratio - 1


# -- the environment ------------------------------------------------------------

def fingerprint(run: Run) -> dict[str, Any]:
    """The run's flat fingerprint keys: the environment facts of lab doctor
    (lab/environment.py), and ``tuning.<key>`` when the manifest records the
    tuning in force; without the readings of the moment (VOLATILE_KEYS)."""
    out = {k: v for k, v in run.environment.items() if not k.startswith(VOLATILE_KEYS)}
    tuning = run.manifest.get("tuning")
    if isinstance(tuning, dict):
        out.update({f"tuning.{k}": v for k, v in _flat(tuning).items()})
    elif tuning is not None:
        out["tuning"] = tuning
    return out


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


MISSING = "(absent)"


def side_fingerprint(side: Side) -> dict[str, Any]:
    """A side's keys: a key whose runs disagree is ``(mixed: a, b)``."""
    prints = [fingerprint(r) for r in side.runs]
    keys = list(dict.fromkeys(k for p in prints for k in p))
    out = {}
    for k in keys:
        values = list(dict.fromkeys(_shown(p.get(k, MISSING)) for p in prints))
        out[k] = prints[0].get(k, MISSING) if len(values) == 1 else f"(mixed: {', '.join(values)})"
    return out


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def environment_diff(sides: Sequence[Side]) -> list[tuple[str, list[Any]]]:
    """(key, value on each side) for exactly the keys whose values differ
    (a key one side lacks is ``(absent)`` there)."""
    prints = [side_fingerprint(s) for s in sides]
    keys = list(dict.fromkeys(k for p in prints for k in p))
    out = []
    for k in keys:
        values = [p.get(k, MISSING) for p in prints]
        if any(v != values[0] for v in values[1:]):
            out.append((k, values))
    return out


def group_by_key(runs: Sequence[Run], key: str) -> list[Side]:
    """The runs grouped by one fingerprint key's value, in order of first
    appearance: each group a side.  CompareError when a run lacks the key
    or all runs share one value."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        print_ = fingerprint(run)
        if key not in print_:
            raise CompareError(f"{run.path}: its fingerprint has no key {key!r}; give a key "
                               "every run has (lab doctor --json lists them), e.g. "
                               "kernel.release")
        groups.setdefault(f"{key}={_shown(print_[key])}", []).append(run)
    if len(groups) < 2:
        raise CompareError(f"--by {key}: every run has {next(iter(groups))}: nothing to "
                           "compare; give runs that differ in it, or compare them without --by")
    return [Side(label, members) for label, members in groups.items()]


# -- the samples of a side --------------------------------------------------------

def _side_samples(side: Side, all_metrics: bool) -> pd.DataFrame:
    """A side's user-side samples (headline metrics unless all_metrics):
    CELL as strings, unit, value, and rep, a repetition's id unique over
    the side's runs (pooled runs' repetitions stay apart)."""
    parts = []
    for i, run in enumerate(side.runs):
        s = user_samples(run)
        if not all_metrics:
            keep = np.zeros(len(s), dtype=bool)
            for family in run.families:
                rows = (s["family"] == family).to_numpy()
                keep[rows] = is_headline(run, family, s[rows])
            s = s[keep]
        part = pd.DataFrame({c: s[c].astype(str).to_numpy() for c in CELL + ["unit"]})
        part["value"] = s["value"].to_numpy(dtype=np.float64)
        part["rep"] = i * (1 << 32) + s["run_id"].to_numpy(dtype=np.int64)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _cells(samples: pd.DataFrame) -> dict[tuple, tuple[str, np.ndarray, np.ndarray]]:
    """cell key -> (unit, values, rep of each value)."""
    values, reps, units = (samples[c].to_numpy() for c in ("value", "rep", "unit"))
    return {key: (str(units[idx[0]]), values[idx], reps[idx])
            for key, idx in samples.groupby(CELL, sort=False).indices.items()}


def rep_medians(values: np.ndarray, reps: np.ndarray) -> np.ndarray:
    _, rep = np.unique(reps, return_inverse=True)
    order = np.lexsort((values, rep))
    bounds = np.searchsorted(rep[order], np.arange(rep.max() + 2))
    v = values[order]
    return np.array([np.median(v[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])


def is_noisy(values: np.ndarray, reps: np.ndarray) -> bool:
    """The summaries' rule (analysis._stats.summarise)."""
    m = rep_medians(values, reps)
    return bool(m.max() - m.min() > NOISY_SPREAD * abs(np.median(values)))


def is_bimodal(values: np.ndarray, reps: np.ndarray) -> bool:
    """Two modes within the repetitions: at least half of them have two
    (_two_modes).  Repetitions that disagree with each other are ``noisy``,
    not bimodal: pooled, any noisy cell would look multi-modal."""
    _, rep = np.unique(reps, return_inverse=True)
    order = np.argsort(rep, kind="stable")
    bounds = np.searchsorted(rep[order], np.arange(rep.max() + 2))
    v = values[order]
    votes = [_two_modes(v[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    return 2 * sum(votes) >= len(votes)


def _two_modes(values: np.ndarray) -> bool:
    """Two modes by the 2-means split of the log samples (BIMODAL_*)."""
    x = np.sort(np.log(np.maximum(values[np.isfinite(values)], 1e-300)))
    n = x.size
    lo = max(int(math.ceil(BIMODAL_MIN_SHARE * n)), 2)
    if n < 2 * lo:
        return False
    s1, s2 = np.cumsum(x), np.cumsum(x * x)
    k = np.arange(lo, n - lo + 1)               # the lower part: the first k samples
    m1 = s1[k - 1] / k
    m2 = (s1[-1] - s1[k - 1]) / (n - k)
    between = k * (n - k) * (m1 - m2) ** 2      # Otsu: maximise the between-part variance
    best = int(np.argmax(between))
    kk = k[best]
    v1 = max(s2[kk - 1] / kk - m1[best] ** 2, 0.0)
    v2 = max((s2[-1] - s2[kk - 1]) / (n - kk) - m2[best] ** 2, 0.0)
    spread = math.sqrt(v1 + v2)
    gap = np.median(x[kk:]) - np.median(x[:kk])       # of the log values: a ratio's log
    if gap < math.log1p(BIMODAL_MIN_GAP):
        return False
    return spread == 0 or bool(math.sqrt(2) * abs(m1[best] - m2[best]) / spread > BIMODAL_D)


# -- the tests ----------------------------------------------------------------------

def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p of the Mann-Whitney U test of a against b: the normal
    approximation with the tie correction and a continuity correction."""
    n1, n2 = a.size, b.size
    n = n1 + n2
    if n1 == 0 or n2 == 0:
        return math.nan
    x = np.concatenate([a, b])
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    counts = np.diff(np.r_[starts, n])
    ranks = np.empty(n)
    ranks[order] = np.repeat(starts + (counts + 1) / 2, counts)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    ties = float((counts.astype(np.float64) ** 3 - counts).sum())
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = max(abs(u - n1 * n2 / 2) - 0.5, 0.0) / math.sqrt(var)
    return math.erfc(z / math.sqrt(2))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values (NaN stays NaN, uncounted)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if not m:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


# -- the kernel view ----------------------------------------------------------------

def _kernel_side(side: Side) -> dict[tuple[str, str, str], dict[str, float]]:
    """(family, variant, point) -> the KERNEL_DIFFS columns: a run's kernel
    view table, or the median over a group's runs."""
    frames = []
    for run in side.runs:
        for family in run.families:
            t = kernel_view_table(run, family)
            if len(t):
                t = t[["variant", "point"] + [c for c, _ in KERNEL_DIFFS]].copy()
                t.insert(0, "family", family)
                t["variant"], t["point"] = t["variant"].astype(str), t["point"].astype(str)
                frames.append(t)
    if not frames:
        return {}
    table = pd.concat(frames, ignore_index=True)
    cols = [c for c, _ in KERNEL_DIFFS]
    table[cols] = table[cols].astype(float)
    med = table.groupby(["family", "variant", "point"], sort=False)[cols].median()
    return {key: row.to_dict() for key, row in med.iterrows()}


# -- the comparison -------------------------------------------------------------------

def compare(sides: Sequence[Side], all_metrics: bool = False, resamples: int = RESAMPLES,
            seed: int = 0) -> Comparison:
    """Every shared cell of the sides, each non-first side against the first
    (see the module's docstring).  CompareError when they share no cell."""
    if len(sides) < 2:
        raise CompareError("give at least two runs to compare")
    cells = [_cells(_side_samples(s, all_metrics)) for s in sides]
    labels = [s.label for s in sides]
    every = list(dict.fromkeys(k for c in cells for k in c))
    shared = [k for k in every if all(k in c for c in cells)]
    only = [(*k, ", ".join(lab for lab, c in zip(labels, cells) if k in c))
            for k in every if not all(k in c for c in cells)]
    only_in = pd.DataFrame(only, columns=CELL + ["present_in"])
    if not shared:
        raise CompareError(f"{' and '.join(labels)} share no (family, variant, point, metric): "
                           "compare runs of the same suite (or suites with points in common)")
    # every cell of every side bootstrapped at once; a side's cell draws from
    # its own generator (seeded by the cell and the side), whatever else is in
    keyed = [(i, k) for i in range(len(sides)) for k in shared]
    boot = bootstrap_medians([cells[i][k][1:] for i, k in keyed],
                             [[seed, zlib.crc32(repr(k).encode()), i] for i, k in keyed],
                             resamples)
    boot_of = dict(zip(keyed, boot))
    kernel = [_kernel_side(s) for s in sides]
    alpha = (1 - CONFIDENCE) / 2
    records = []
    flags = {(i, k): (is_noisy(*cells[i][k][1:]), is_bimodal(*cells[i][k][1:]))
             for i, k in keyed}
    for k in shared:
        unit, base_values, base_reps = cells[0][k]
        base_median = float(np.median(base_values))
        for i in range(1, len(sides)):
            _, values, reps = cells[i][k]
            median = float(np.median(values))
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios = boot_of[(i, k)] / boot_of[(0, k)]
                ratio = np.float64(median) / base_median
            ratios = ratios[~np.isnan(ratios)]
            low, high = (np.quantile(ratios, [alpha, 1 - alpha]) if ratios.size
                         else (math.nan, math.nan))
            rec = dict(zip(CELL, k))
            rec.update(unit=unit, baseline=labels[0], run=labels[i],
                       reps_baseline=int(np.unique(base_reps).size),
                       reps=int(np.unique(reps).size), median_baseline=base_median,
                       median=median, ratio=float(ratio), ci_low=float(low),
                       ci_high=float(high), p=mann_whitney_p(base_values, values),
                       noisy=flags[(0, k)][0] or flags[(i, k)][0],
                       bimodal=flags[(0, k)][1] or flags[(i, k)][1])
            kb, ki = kernel[0].get(k[:3]), kernel[i].get(k[:3])
            for column, _ in KERNEL_DIFFS:
                rec[f"d_{column}"] = (ki[column] - kb[column]) if kb and ki else math.nan
            records.append(rec)
    rows = pd.DataFrame.from_records(records)
    rows["p_holm"] = holm(rows["p"].to_numpy())
    apart = (rows["p_holm"] < ALPHA) & ((rows["ci_low"] > 1) | (rows["ci_high"] < 1))
    better = np.where(rows["unit"].map(higher_is_better), rows["ratio"] > 1, rows["ratio"] < 1)
    rows["verdict"] = np.where(~apart, NOT_TOLD_APART, np.where(better, FASTER, SLOWER))
    rows = rows[list(ROW_COLUMNS)]
    return Comparison(labels, rows, only_in, environment_diff(sides), resamples)


def read_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows read back from an export (CSV or JSON) as compare() made them."""
    out = frame[list(ROW_COLUMNS)].copy()
    for c in CELL + ["unit", "baseline", "run", "verdict"]:
        out[c] = out[c].astype(str)
    for c in ("noisy", "bimodal"):
        out[c] = out[c].map(lambda v: v if isinstance(v, bool) else str(v) == "True")
    for c in ("reps_baseline", "reps"):
        out[c] = out[c].astype(int)
    for c in ROW_COLUMNS:
        if c not in CELL + ["unit", "baseline", "run", "verdict", "noisy", "bimodal",
                            "reps_baseline", "reps"]:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)   # JSON null: NaN
    return out


def telling_points(points) -> dict[str, str]:
    """Point labels with only the ``name=value`` parts that tell the points
    apart: a name that takes one value wherever it appears is left out
    (``file_mb=2`` when every point that has a file_mb has 2), so a wide
    table keeps its numbers on screen.  A label left empty is ``-``."""
    points = [str(p) for p in dict.fromkeys(points)]
    parts = {p: [x for x in p.split(" ") if "=" in x] for p in points}
    values: dict[str, set[str]] = {}
    for items in parts.values():
        for x in items:
            name, _, value = x.partition("=")
            values.setdefault(name, set()).add(value)
    keep = {n for n, v in values.items() if len(v) > 1}
    return {p: " ".join(x for x in parts[p] if x.partition("=")[0] in keep) or "-"
            for p in points}
