"""The msgport family's part on reply ports that run code (lab/families/
_msgport_upcall.py: port_upcall, port_critical, port_timeout_upcall),
every number from the stored run:

- a table, one row per (op, batch) and mode, the upcall ports beside
  port_eventfd and port_deferred of the same op and batch (the queue-and-
  wake and the flushsys() ports they stand against): ns per message
  (median, 95% CI, p99), replies per signal (the port function's reaps per
  SIGUSR1 it handled), signals per batch, replies deferred to the flush
  per batch, timeouts fired per batch;
- a line per (op, batch): port_upcall's and port_critical's medians over
  port_eventfd's and port_deferred's, with the CIs divided crosswise, and
  the replies per signal.

A run without these variants gives an empty table and no lines.
"""

from __future__ import annotations

import pandas as pd

from analysis._format import fmt_finite, fmt_ratio, fmt_ratio_interval, fmt_value
from analysis._views import cached_per_run, median_ratio, plain_param
from analysis.families import msgport as base
from lab.families import _msgport_upcall as part

UPCALL_PORTS = tuple(part.MODES)
BESIDE = ("port_eventfd", "port_deferred")
ROWS = UPCALL_PORTS + BESIDE
COUNTERS = ("replies_per_signal", "signals_handled", "deferred_replies", "timeouts_fired",
            "flushed_in_time")
COLUMNS = ["variant", "point", "op", "batch", "flush_after_us", "timeout_us", "n", "reps",
           "median", "p99", "ci_low", "ci_high", "noisy", "replies_per_signal",
           "signals_per_batch", "deferred_per_batch", "timeouts_per_batch"]


def upcall_port_table(run, family: str = base.FAMILY, seed: int = 0) -> pd.DataFrame:
    """Rows of the upcall ports and, at the same op and batch, port_eventfd
    and port_deferred (COLUMNS; the per-batch counts are the counters'
    medians over the user-side runs / samples).  Rows by op, batch, mode."""
    return cached_per_run(run, "msgport", ("upcall_ports", family, seed),
                          lambda: _table(run, family, seed))


def _table(run, family: str, seed: int) -> pd.DataFrame:
    data = base._cells(run, family, ROWS, COUNTERS, None, seed)
    if data.empty or not data["variant"].isin(UPCALL_PORTS).any():
        return pd.DataFrame(columns=COLUMNS)
    data["op"] = data["op"].astype(str)
    data["batch"] = [int(plain_param(b)) for b in data["batch"]]
    ours = data[data["variant"].isin(UPCALL_PORTS)]
    points = set(zip(ours["op"], ours["batch"]))
    data = data[[(o, b) in points for o, b in zip(data["op"], data["batch"])]].copy()
    for col in ("flush_after_us", "timeout_us"):
        if col not in data.columns:
            data[col] = float("nan")
        data.loc[data["variant"] != "port_timeout_upcall", col] = float("nan")
    samples = pd.to_numeric(data["samples"], errors="coerce") if "samples" in data.columns \
        else pd.Series(float("nan"), index=data.index)
    data["signals_per_batch"] = data["signals_handled"] / samples
    data["deferred_per_batch"] = data["deferred_replies"] / samples
    data["timeouts_per_batch"] = data["timeouts_fired"] / samples
    data = base._order(data, {"op": base.OPS, "batch": None, "variant": ROWS,
                              "flush_after_us": None})
    return data[COLUMNS]


def _row(table: pd.DataFrame, op: str, batch: int, variant: str):
    hit = table[(table["op"] == op) & (table["batch"] == batch) & (table["variant"] == variant)]
    return None if hit.empty else hit.iloc[0]


def lines(table: pd.DataFrame) -> list[str]:
    """Per (op, batch): each upcall port (port_timeout_upcall aside: its
    time is the work before the flush) over port_eventfd and port_deferred,
    95% intervals, and its replies per signal."""
    out = []
    for (op, batch), _ in table.groupby(["op", "batch"], sort=False):
        parts = []
        for variant in ("port_upcall", "port_critical"):
            r = _row(table, op, batch, variant)
            if r is None:
                continue
            vs = []
            for other in BESIDE:
                o = _row(table, op, batch, other)
                if o is not None:
                    ratio, low, high = median_ratio(r, o)
                    vs.append(f"{fmt_ratio(ratio)} {other} (95% interval "
                              f"{fmt_ratio_interval(low, high)})")
            text = f"{variant} {fmt_finite(r['median'])} ns per message"
            if vs:
                text += ", " + ", ".join(vs)
            if r["signals_per_batch"] > 0:
                text += f", {fmt_value(r['replies_per_signal'])} replies per signal"
            parts.append(text)
        if parts:
            out.append(f"op={op}, batch {batch}: " + "; ".join(parts) + ".")
    return out
