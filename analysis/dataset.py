"""Reading a dataset ``lab dataset`` made (lab/dataset.py: its layout and
schema) with DuckDB, in place: one view per table, the hive partitions
``host`` and ``kernel`` as columns.

    con = connect("fleet")
    con.execute("SELECT host, kernel, count(*) FROM samples GROUP BY ALL").df()
    medians(con)            # per suite run, family, variant, point, metric
"""

from __future__ import annotations

import os

import pandas as pd

from lab import dataset as _dataset

# the columns that name a (family, variant, point, metric) cell of one suite run
CELL = ("suite_run", "family", "variant", "point", "metric")


def connect(out: str, database: str = ":memory:"):
    """A duckdb connection with views samples, runs, metrics and
    environment over the dataset folder ``out``; raises
    lab.dataset.DatasetError if ``out`` is not one."""
    import duckdb

    if not os.path.exists(os.path.join(out, _dataset.MARKER)):
        raise _dataset.DatasetError(f"{out}: not a lab dataset (no {_dataset.MARKER}); make one "
                                    f"with: lab dataset RUN_DIR... --out {out}")
    _dataset.check_out(out)
    con = duckdb.connect(database)
    for table in _dataset.TABLES:
        files = os.path.join(out, table, "**", f"*{_dataset.SUFFIX}")
        # union_by_name: a dataset may hold files that lab versions with
        # different columns wrote
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet("
                    f"{_quote(files)}, hive_partitioning = true, union_by_name = true)")
    return con


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def medians(con, user_side: bool = True) -> pd.DataFrame:
    """The median of every (suite run, family, variant, point, metric) cell,
    with its host, kernel and sample count, computed by DuckDB; from the
    runs that feed user-side numbers (as analysis.headline's medians) unless
    ``user_side`` is False."""
    where = "WHERE user_side" if user_side else ""
    keys = ", ".join(CELL)
    return con.execute(f"SELECT host, kernel, {keys}, median(value) AS median, count(*) AS n "
                   f"FROM samples {where} GROUP BY host, kernel, {keys} "
                   f"ORDER BY host, kernel, {keys}").df()
