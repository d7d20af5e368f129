"""What the probes cost, and what they will cost a workload.

- probe_cost_table(): per probe, from the ``probe_cost`` family's runs
  (the probe alone against the same workload without probes, interleaved):
  its program runs per operation (the kernel view's own count) and its cost
  per run, the overhead divided by the runs.
- predicted_overhead_table(): per (variant, point) of a family that ran
  with and without probes: the probes' runs per operation on that workload
  times each probe's cost per run, beside the overhead measured.  The two
  agreeing is what lets a user tell in advance what attaching the probes
  costs a new workload.

Both only from the run at hand: a cost measured elsewhere is never used.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis._kernel import kernel_metric_summary, probe_overhead_table
from analysis._results import Run
from analysis._views import is_headline, per_run, pivot_wide, run_sources

FAMILY = "probe_cost"


def _runs_per_op(concern: str) -> str:
    from lab.probes import PER_OP, probe_runs_metric
    return PER_OP[probe_runs_metric(concern)]


@per_run
def pair_deltas(run: Run, family: str) -> pd.DataFrame:
    """Per (variant, point) that ran with and without probes: the headline
    median of each repetition's run with probes minus its twin's without
    (the two ran back to back, so they share the machine's state, which on
    a VM shifts over seconds): delta (the median over repetitions),
    delta_low, delta_high, pairs."""
    columns = ["variant", "point", "delta", "delta_low", "delta_high", "pairs"]
    src = run_sources(run)
    src = src[src["family"].astype(str) == family]
    if src.empty or family not in run.families:
        return pd.DataFrame(columns=columns)
    s = run.samples
    # the columns used only: picking rows copies every column there is
    s = s.loc[(s["family"] == family).to_numpy(), ["variant", "metric", "run_id", "value"]]
    s = s[is_headline(run, family, s)]
    medians = s.groupby("run_id")["value"].median()
    src = src.assign(variant=src["variant"].astype(str), point=src["point"].astype(str),
                     median=src["run_id"].map(medians).to_numpy())
    twins = pivot_wide(src, ["variant", "point", "repetition"], "kernel_view", "median", "median")
    if True not in twins.columns or False not in twins.columns:
        return pd.DataFrame(columns=columns)
    d = (twins[True] - twins[False]).dropna().groupby(level=["variant", "point"])
    out = d.agg(delta="median", delta_low="min", delta_high="max", pairs="size").reset_index()
    return out[columns]


@per_run
def probe_cost_table(run: Run) -> pd.DataFrame:
    """One row per probe measured: probe, workload (its variant's help),
    reps, median_without, median_with [ns per operation], runs_per_op,
    cost_ns (per program run, from the median over repetitions of each
    twin pair's difference; cost_low..cost_high from the pairs'), beside (the
    probes attached with it, whose cost per run is
    subtracted), noisy."""
    columns = ["probe", "workload", "reps", "median_without", "median_with", "runs_per_op",
               "cost_ns", "cost_low", "cost_high", "beside", "noisy"]
    if FAMILY not in run.families:
        return pd.DataFrame(columns=columns)
    overhead = probe_overhead_table(run, FAMILY)
    kernel = kernel_metric_summary(run, FAMILY)
    variants = run.families[FAMILY]["variants"]
    pairs = pair_deltas(run, FAMILY).set_index("variant")

    def runs_per_op(variant: str, probe: str) -> float:
        k = kernel[(kernel["variant"].astype(str) == variant)
                   & (kernel["metric"].astype(str) == _runs_per_op(probe))]
        return float(k["median"].iloc[0]) if len(k) else 0.0

    # a variant measured on top of other probes (probe_cost's "probes")
    # has their cost per run subtracted: the probes alone come first
    def others(variant: str) -> list[str]:
        return [p for p in variants[variant].get("probes") or [variant] if p != variant]

    cost: dict[str, tuple[float, float, float]] = {}
    rows = []
    for r in sorted(overhead.itertuples(), key=lambda r: len(others(r.variant))):
        probe = r.variant
        per_op = runs_per_op(probe, probe)
        beside = sum(runs_per_op(probe, p) * cost.get(p, (math.nan,) * 3)[0]
                     for p in others(probe))

        def each_run(delta: float) -> float:
            return (delta - beside) / per_op if per_op > 0 else math.nan
        # from the twin pairs, each run back to back (pair_deltas)
        pair = pairs.loc[probe] if probe in pairs.index else None
        cost[probe] = ((each_run(pair["delta"]), each_run(pair["delta_low"]),
                        each_run(pair["delta_high"])) if pair is not None
                       else (math.nan,) * 3)
        rows.append({"probe": probe, "workload": variants[probe]["help"], "reps": r.reps,
                     "median_without": r.median_without, "median_with": r.median_with,
                     "runs_per_op": per_op, "cost_ns": cost[probe][0],
                     "cost_low": cost[probe][1], "cost_high": cost[probe][2],
                     "beside": ", ".join(others(probe)), "noisy": bool(r.noisy)})
    order = {v: i for i, v in enumerate(variants)}
    rows.sort(key=lambda row: order.get(row["probe"], len(order)))
    return pd.DataFrame(rows, columns=columns)


@per_run
def predicted_overhead_table(run: Run, family: str) -> pd.DataFrame:
    """Per (variant, point) of family with probe overhead measured: the
    headline's median without probes, the measured overhead (ns: the median
    of the twin pairs' differences, pair_deltas; and as a fraction of the
    median without), the predicted one (sum over probes of runs per operation x
    cost per run), ratio = measured / predicted, and the probes' runs per
    operation (runs_<probe> columns).  Empty without probe_cost rows."""
    costs = probe_cost_table(run)
    costs = costs[np.isfinite(costs["cost_ns"].astype(float))] if len(costs) else costs
    overhead = probe_overhead_table(run, family)
    if costs.empty or overhead.empty:
        return pd.DataFrame(columns=["variant", "point", "median_without", "measured_ns",
                                     "measured", "predicted_ns", "predicted", "ratio"])
    kernel = kernel_metric_summary(run, family)
    pairs = pair_deltas(run, family).set_index(["variant", "point"])
    median_of = dict(zip(zip(kernel["variant"].astype(str), kernel["point"].astype(str),
                             kernel["metric"].astype(str)), kernel["median"].astype(float)))
    cost_of = dict(zip(costs["probe"], costs["cost_ns"].astype(float)))
    rows = []
    for r in overhead.itertuples():
        per_op = {p: median_of.get((r.variant, r.point, _runs_per_op(p)), 0.0) for p in cost_of}
        predicted = sum(per_op[p] * cost_of[p] for p in cost_of)
        key = (r.variant, r.point)
        measured = float(pairs.loc[key, "delta"]) if key in pairs.index else math.nan
        rows.append({"variant": r.variant, "point": r.point,
                     "median_without": r.median_without, "measured_ns": measured,
                     "measured": measured / r.median_without, "predicted_ns": predicted,
                     "predicted": predicted / r.median_without,
                     "ratio": measured / predicted if predicted > 0 else math.nan,
                     **{f"runs_{p}": v for p, v in per_op.items()}})
    return pd.DataFrame(rows)


# -- as text (lab show) and as report blocks -------------------------------------

COST_NOTE = ("cost per run: the probe attached against the same workload without probes, "
             "the median over repetitions of each twin pair's difference (run back to "
             "back), less what the probes beside it cost, over the probe's program runs per "
             "operation in the kernel view; per repetition: the pairs' lowest and highest")
PREDICTION_NOTE = ("predicted: the probes' runs per operation on this workload (kernel view) "
                   "x each probe's cost per run (probe_cost); measured: the median over "
                   "repetitions of each twin pair's difference (with all probes minus "
                   "without, run back to back); ratio: measured / predicted")


def cost_rows(run: Run) -> tuple[list[str], list[list[str]]]:
    from analysis._format import fmt_value
    table = probe_cost_table(run)
    header = ["probe", "beside", "reps", "without [ns/op]", "with [ns/op]", "runs/op",
              "cost per run [ns]", "per repetition [ns]"]
    rows = [[r.probe, r.beside or "-", str(r.reps), fmt_value(r.median_without),
             fmt_value(r.median_with),
             fmt_value(r.runs_per_op), fmt_value(r.cost_ns),
             f"{fmt_value(r.cost_low)}..{fmt_value(r.cost_high)}" + (" noisy" if r.noisy else "")]
            for r in table.itertuples()]
    return header, rows


def prediction_rows(run: Run, family: str) -> tuple[list[str], list[list[str]]]:
    from analysis._format import fmt_percent, fmt_value
    table = predicted_overhead_table(run, family)
    if table.empty:
        return [], []
    probes = [c[len("runs_"):] for c in table.columns if c.startswith("runs_")]
    header = (["variant", "point", "measured", "predicted", "ratio"]
              + [f"{p} runs/op" for p in probes])
    rows = [[r["variant"], r["point"],
             f"{fmt_percent(r['measured'])} ({fmt_value(r['measured_ns'])} ns)",
             f"{fmt_percent(r['predicted'])} ({fmt_value(r['predicted_ns'])} ns)",
             fmt_value(r["ratio"])] + [fmt_value(r[f"runs_{p}"]) for p in probes]
            for _, r in table.iterrows()]
    return header, rows


def prediction_sentence(run: Run, family: str) -> str | None:
    """How well runs per operation x cost per run predicts the overhead."""
    table = predicted_overhead_table(run, family)
    if table.empty:
        return None
    ratio = table["ratio"].astype(float)
    ok = ratio[np.isfinite(ratio)]
    within = int(((ok >= 1 / 1.5) & (ok <= 1.5)).sum())
    return (f"Predicted against measured probe overhead on {family}: {within} of "
            f"{len(table)} points within a factor of 1.5 (measured / predicted "
            + (f"{ok.min():.2g}..{ok.max():.2g}" if len(ok) else "undefined")
            + "); a point whose overhead is within the noise of its twins disagrees "
              "by chance.")


def show_lines(run: Run, family: str) -> list[str]:
    """lab show: the per-probe cost (family probe_cost) or the prediction."""
    from analysis._format import align_text
    out: list[str] = []
    if family == FAMILY:
        header, rows = cost_rows(run)
        if rows:
            out.append("  cost of each probe alone, per program run on the run's events:")
            out += align_text(header, rows)
        return out
    header, rows = prediction_rows(run, family)
    if rows:
        out.append("  probe overhead predicted (runs/op x cost per run) against measured:")
        out += align_text(header, rows)
        out.append(f"  {prediction_sentence(run, family)}")
    return out


def report_blocks(run: Run, family: str) -> list:
    from analysis._pages import Heading, Space, Table, Text
    if family == FAMILY:
        header, rows = cost_rows(run)
        if not rows:
            return []
        return [Heading("Cost of each probe", size=12, keep_with_next=0.8),
                Table(header, rows, caption="Each probe alone against no probes, per "
                      "program run", notes=[COST_NOTE]), Space(0.1)]
    header, rows = prediction_rows(run, family)
    if not rows:
        return []
    sentence = prediction_sentence(run, family)
    return [Heading("Probe overhead: predicted against measured", size=12, keep_with_next=0.8),
            Table(header, rows, caption="What attaching the probes was predicted to cost "
                  "this workload, and what it cost", notes=[PREDICTION_NOTE]),
            *([Text(sentence, size=10)] if sentence else []), Space(0.1)]
