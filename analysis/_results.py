"""Read one stored suite run into pandas tables.

The manifest is the commit point (lab/store.py): a samples file counts only
when the manifest lists its run as ``ok``; every other run (failed, timeout,
interrupted, pending) is kept as a row of ``Run.runs`` with its reason, and
contributes no sample (nor counters: ``Run.counters`` holds what the ok runs'
workers counted themselves, manifest ``runs[].counters``).  ``Run.runs`` also
has each run's ``throughput``: operations per second of its measured window
(ops / window_ns).  A *point* is named by the run's axis parameters
(Param.axis in lab/model.py), never by bookkeeping ones such as ``samples``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pandas as pd

from lab import store

NO_POINT = "-"
# columns of Run.samples / Run.runs that a parameter name must not shadow
_FIXED = ("run_id", "family", "variant", "point", "repetition", "kernel_view", "status",
          "reason", "duration_s", "ops", "window_ns", "throughput", "metric", "unit", "sample",
          "value", "params", "probe", "key", "counter")
# Run.runs columns before the parameter columns
_RUN_COLUMNS = ["run_id", "family", "variant", "point", "repetition", "kernel_view", "status",
                "reason", "duration_s", "ops", "window_ns", "throughput"]
# Run.counters columns before the parameter columns
COUNTER_COLUMNS = ["run_id", "family", "variant", "point", "repetition", "kernel_view", "counter",
                   "value"]
# Run.metrics columns: the run it belongs to, then the probes' tidy rows (lab/store.py)
METRIC_COLUMNS = ["run_id", "family", "variant", "point", "repetition", "kernel_view", "probe",
                  "metric", "key", "value"]
# the wake-up records' columns (as lab.store writes them)
WAKEUP_COLUMNS = list(store.WAKEUP_COLUMNS)


@dataclass
class Run:
    """One suite run as stored: ``load_run(path)`` builds it."""

    path: str
    manifest: dict[str, Any]
    runs: pd.DataFrame          # one row per planned run, every status
    samples: pd.DataFrame       # tidy: one row per sample of the ok runs
    skipped: pd.DataFrame       # variant points the runner did not run, with reasons
    families: dict[str, Any] = field(repr=False)
    environment: dict[str, Any] = field(repr=False)
    # tidy: one row per probe metric of the ok runs with kernel view (metrics.parquet)
    metrics: pd.DataFrame = field(default_factory=lambda: _empty_metrics(), repr=False)
    # tidy: one row per counter of the ok runs (manifest runs[].counters): what the
    # family's worker counted itself in the measured window (EAGAINs, atoms not run...)
    counters: pd.DataFrame = field(default_factory=lambda: _empty_counters(), repr=False)
    # run_id -> its wake-up records, column -> array (wakeup_columns)
    _wakeups: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False,
                                                       compare=False)

    @property
    def name(self) -> str:
        return self.manifest.get("suite", {}).get("name") or os.path.basename(self.path)

    def family_names(self) -> list[str]:
        return list(self.families)

    def variant_names(self, family: str) -> list[str]:
        return list(self.families[family]["variants"])

    def headline_metric(self, family: str, variant: str) -> str:
        return self.families[family]["variants"][variant]["headline"]

    def not_ok(self) -> pd.DataFrame:
        """Runs that contributed no samples (failed, timeout, interrupted, pending)."""
        return self.runs[self.runs["status"] != store.OK]


def param_column(name: str) -> str:
    """Column holding parameter ``name`` (prefixed only if it would shadow a fixed one)."""
    return f"param_{name}" if name in _FIXED else name


def point_label(family: dict[str, Any], params: dict[str, Any]) -> str:
    """``placement=cross_cpu batch=64``: the run's axis parameters, or ``-``."""
    axes = family.get("params", {})
    parts = [f"{k}={v}" for k, v in params.items() if axes.get(k, {}).get("axis", True)]
    return " ".join(parts) if parts else NO_POINT


def _point_order(manifest: dict[str, Any], points: dict[str, tuple[str, dict]]) -> list[str]:
    """Point labels in the order the suite lists the swept values (same_cpu
    before cross_cpu, batch 8 before 64 if the suite said so)."""
    swept = {f: sel.get("values", {}) for f, sel in manifest.get("suite", {}).get("families", {}).items()}

    def key(label: str):
        family, params = points[label]
        axes = manifest["families"].get(family, {}).get("params", {})
        parts = []
        for name, value in params.items():
            if not axes.get(name, {}).get("axis", True):
                continue
            values = swept.get(family, {}).get(name, [])
            index = values.index(value) if value in values else len(values)
            parts.append((name, index, str(value)))
        return (len(parts), parts)

    return sorted(points, key=key)


def _param_series(values: list[Any]) -> pd.Series:
    """A parameter column: nullable ints, floats, booleans or categories."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="boolean")
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.Series(values, dtype="Int64")
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
    return pd.Series(pd.Categorical([None if v is None else str(v) for v in values]))


def _categorical(values, categories) -> pd.Categorical:
    return pd.Categorical(values, categories=list(dict.fromkeys(categories)))


def load_run(run_dir: str) -> Run:
    """Read a results folder: the manifest (version- and schema-checked by
    lab.store.read_manifest) and the samples of its ok runs.  Raises
    lab.store.ResultsError, one line saying what and how to fix it, when the
    folder is not readable as results: a damaged manifest, a samples file
    missing, not Parquet, or holding NaN or infinity."""
    manifest = store.read_manifest(run_dir)
    families: dict[str, Any] = manifest.get("families") or {}
    runs_meta: list[dict[str, Any]] = manifest.get("runs") or []
    skipped_meta: list[dict[str, Any]] = manifest.get("skipped") or []

    variant_order = [v for f in families.values() for v in f.get("variants", {})]
    metric_order = [m for f in families.values() for v in f.get("variants", {}).values()
                    for m in v.get("metrics", {})]
    units = {(fn, vn, mn): m.get("unit", "")
             for fn, f in families.items() for vn, v in f.get("variants", {}).items()
             for mn, m in v.get("metrics", {}).items()}

    points: dict[str, tuple[str, dict]] = {}
    for entry in runs_meta + skipped_meta:
        fam = families.get(entry["family"], {})
        points.setdefault(point_label(fam, entry.get("params") or {}),
                          (entry["family"], entry.get("params") or {}))
    point_order = _point_order(manifest, points) if points else []
    family_order = list(families) + [e["family"] for e in runs_meta + skipped_meta]
    variant_order += [e["variant"] for e in runs_meta + skipped_meta]

    param_names = list(dict.fromkeys(k for e in runs_meta + skipped_meta for k in (e.get("params") or {})))

    def table(entries: list[dict[str, Any]], columns: dict[str, list]) -> pd.DataFrame:
        df = pd.DataFrame(columns)
        df["family"] = _categorical([e["family"] for e in entries], family_order)
        df["variant"] = _categorical([e["variant"] for e in entries], variant_order)
        df["point"] = _categorical(
            [point_label(families.get(e["family"], {}), e.get("params") or {}) for e in entries],
            point_order)
        for name in param_names:
            df[param_column(name)] = _param_series([(e.get("params") or {}).get(name) for e in entries])
        return df

    def column(name: str, dtype: str) -> pd.Series:
        # a field an older folder lacks reads as its default (lab.store.RunRecord)
        return pd.Series(store.run_column(runs_meta, name), dtype=dtype)

    runs = table(runs_meta, {"run_id": column("id", "int64")})
    runs["repetition"] = column("repetition", "int64")
    runs["kernel_view"] = column("kernel_view", "bool")
    runs["status"] = column("status", "str")
    runs["reason"] = column("reason", "object")
    runs["duration_s"] = column("duration_s", "float64")
    runs["ops"] = column("ops", "Int64")
    runs["window_ns"] = column("window_ns", "Int64")
    runs["throughput"] = _throughput(runs["ops"], runs["window_ns"])
    runs = runs[_RUN_COLUMNS + [param_column(n) for n in param_names]]

    skipped = table(skipped_meta, {})
    skipped["reason"] = pd.Series([s.get("reason") for s in skipped_meta], dtype="object")
    skipped = skipped[["family", "variant", "point", "reason"] + [param_column(n) for n in param_names]]

    samples = _load_samples(run_dir, runs, runs_meta, metric_order, units)
    metrics = _load_metrics(run_dir, runs)
    counters = _load_counters(runs, runs_meta)
    return Run(path=run_dir, manifest=manifest, runs=runs, samples=samples, skipped=skipped,
               families=families, environment=dict(manifest.get("environment") or {}),
               metrics=metrics, counters=counters)


def _throughput(ops: pd.Series, window_ns: pd.Series) -> pd.Series:
    """Operations per second of each run's measured window (NaN without one)."""
    o = ops.astype("float64").to_numpy(na_value=np.nan)
    w = window_ns.astype("float64").to_numpy(na_value=np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(w > 0, o / w * 1e9, np.nan)
    return pd.Series(t, index=ops.index, dtype="float64")


def _run_keys(base: pd.DataFrame) -> dict[str, Any]:
    """The columns that tie a row of a tidy table to its run."""
    return {"run_id": base["run_id"].astype("int64"), "family": base["family"],
            "variant": base["variant"], "point": base["point"],
            "repetition": base["repetition"], "kernel_view": base["kernel_view"]}


def _empty_counters() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": pd.Series(dtype="int64"), "family": pd.Categorical([]),
        "variant": pd.Categorical([]), "point": pd.Categorical([]),
        "repetition": pd.Series(dtype="int64"), "kernel_view": pd.Series(dtype="bool"),
        "counter": pd.Categorical([]), "value": pd.Series(dtype="float64")})


def _load_counters(runs: pd.DataFrame, runs_meta: list[dict[str, Any]]) -> pd.DataFrame:
    """manifest runs[].counters of the ok runs as tidy rows, with the run's
    parameters (like Run.samples).  Counter names keep the order the
    family's worker reports them in."""
    rows, names, values = [], [], []
    for i, meta in enumerate(runs_meta):
        if meta.get("status") != store.OK:
            continue
        for name, value in (meta.get("counters") or {}).items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue            # a counter is a number; anything else is not one
            rows.append(i)
            names.append(str(name))
            values.append(value)
    if not rows:
        out = _empty_counters()
        for col in runs.columns[len(_RUN_COLUMNS):]:
            out[col] = runs[col].iloc[:0].reset_index(drop=True)
        return out
    base = runs.iloc[rows].reset_index(drop=True)
    out = pd.DataFrame({
        **_run_keys(base),
        "counter": pd.Categorical(names, categories=list(dict.fromkeys(names))),
        "value": np.asarray(values, dtype=np.float64),
    })
    for col in runs.columns[len(_RUN_COLUMNS):]:
        out[col] = base[col]
    return out


def _load_samples(run_dir: str, runs: pd.DataFrame, runs_meta: list[dict[str, Any]],
                  metric_order: list[str], units: dict[tuple, str]) -> pd.DataFrame:
    ok_rows = [i for i, r in enumerate(runs_meta) if r.get("status") == store.OK]
    # metric and unit as category codes, from each file's own dictionary of
    # names: a string per sample costs more than reading the files
    rows, metric_names, unit_names, codes, samples, values = [], [], [], [], [], []

    def read(i: int):
        # checked to stay inside run_dir when the manifest was read (lab.store)
        path = os.path.join(run_dir, store.run_samples_file(runs_meta[i]))
        return _read_samples(path, run_dir, runs_meta[i])

    for i, (names, code, sample, value) in zip(ok_rows, _read_in_threads(read, ok_rows)):
        meta = runs_meta[i]
        rows.append(np.full(len(code), i, dtype=np.int64))
        metric_names.append(names)
        unit_names.append([units.get((meta["family"], meta["variant"], n), "") for n in names])
        codes.append(code)
        samples.append(sample)
        values.append(value)
    used = [np.unique(c) for c in codes]

    def categories(names_per_file: list[list[str]]) -> list[str]:
        return sorted({names[c] for names, u in zip(names_per_file, used) for c in u})

    def recoded(names_per_file: list[list[str]], cats: list[str]) -> np.ndarray:
        at = {c: j for j, c in enumerate(cats)}
        return _joined([np.array([at.get(n, -1) for n in names], dtype=np.int64)[c]
                        for names, c in zip(names_per_file, codes)], np.int64)

    metric_cats = list(dict.fromkeys(metric_order + categories(metric_names)))
    unit_cats = categories(unit_names)
    metric, unit = recoded(metric_names, metric_cats), recoded(unit_names, unit_cats)
    run_of_sample = _joined(rows, np.int64)
    sample = _joined(samples, np.int64).astype(np.int64, copy=False)
    value = _joined(values, np.float64)

    base = runs.iloc[run_of_sample].reset_index(drop=True)
    out = pd.DataFrame({
        "run_id": base["run_id"],
        "family": base["family"],
        "variant": base["variant"],
        "point": base["point"],
        "repetition": base["repetition"],
        "kernel_view": base["kernel_view"],
        "metric": pd.Categorical.from_codes(metric, categories=metric_cats),
        "unit": pd.Categorical.from_codes(unit, categories=unit_cats),
        "sample": sample,
        "value": value,
    })
    for col in runs.columns[len(_RUN_COLUMNS):]:
        out[col] = base[col]
    return out


def _joined(parts: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def _rerun_fix(run_dir: str, run_id: int) -> str:
    """How to replace one run's damaged samples: run it again."""
    return (f"set run {run_id}'s status to \"{store.PENDING}\" in {store.MANIFEST} and run it "
            f"again: lab run --resume {run_dir}")


def _one_line(e: BaseException) -> str:
    """An exception's text on one line (pyarrow's span several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _read_parquet(path: str, columns: list[str] | None = None):
    """One Parquet file as a pyarrow Table.  pq.read_table goes through the
    dataset layer, about 1 ms a file, and a run has hundreds of small
    files; ParquetFile reads the file alone.  It skips a column it does
    not have where read_table raises, so that is checked here."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as f:
        absent = [c for c in columns or () if c not in f.schema_arrow.names]
        if absent:
            raise ValueError(f"no column {', '.join(absent)}")
        return f.read(columns=columns)


def _read_samples(path: str, run_dir: str, meta: dict[str, Any]):
    """(metric names, metric codes, sample, value) of one ok run's samples
    file (sample i's metric is names[codes[i]]), or
    ResultsError: missing, not a Parquet table of samples, other counts
    than the manifest's, or values that are not finite (a worker's samples
    are times and rates: NaN or infinity in a file is damage, and would
    silently bend every median and interval computed from it)."""
    import pyarrow as pa

    run_id = meta["id"]
    fix = _rerun_fix(run_dir, run_id)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise store.ResultsError(f"{path}: not a file, but the manifest names it as the "
                                     f"samples of run {run_id}; {fix}")
        table = _read_parquet(path, list(store.SAMPLE_COLUMNS))
    except FileNotFoundError:
        raise store.ResultsError(
            f"{path}: missing, but the manifest lists run {run_id} as ok; {fix}") from None
    except PermissionError:
        raise store.ResultsError(f"{path}: the samples of run {run_id} are not readable by "
                                 f"you; check its permissions (ls -l {path})") from None
    except store.ResultsError:
        raise
    except Exception as e:       # pyarrow raises several types for a bad file
        raise store.ResultsError(f"{path}: unreadable samples of run {run_id}: not a Parquet "
                                 f"table of samples ({_one_line(e)}); {fix}") from None
    types = {name: table.schema.field(name).type for name in ("sample", "value")}
    if not pa.types.is_integer(types["sample"]) or not (
            pa.types.is_floating(types["value"]) or pa.types.is_integer(types["value"])):
        raise store.ResultsError(f"{path}: samples of run {run_id} have column types "
                                 f"sample {types['sample']}, value {types['value']} (expected "
                                 f"integers and numbers); {fix}")
    names, codes = _codes(table.column("metric"))
    counts = np.bincount(codes, minlength=len(names))
    found = {n: int(k) for n, k in sorted(zip(names, counts.tolist())) if k}
    expected = {k: int(v) for k, v in (meta.get("n_samples") or {}).items()}
    if expected and found != expected:
        raise store.ResultsError(f"{path}: holds {found} samples but the manifest says "
                                 f"{expected} for run {run_id}; {fix}")
    value = table.column("value").to_numpy().astype(np.float64, copy=False)
    bad = ~np.isfinite(value)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        kinds = " and ".join(k for k, n in (("NaN", np.isnan(value).sum()),
                                            ("inf", np.isinf(value).sum())) if n)
        n = int(bad.sum())
        raise store.ResultsError(
            f"{path}: {n} of the {len(value)} samples of run {run_id} {'is' if n == 1 else 'are'} "
            f"{kinds} (the first: {names[codes[first]]} sample {first}); {fix}")
    return names, codes, table.column("sample").to_numpy(), value


def _codes(column) -> tuple[list[str], np.ndarray]:
    """A column of names as (distinct names, the index of each row's name
    among them); names as str() makes them, a missing one "None"."""
    import pyarrow as pa

    array = column.combine_chunks()
    if not pa.types.is_dictionary(array.type):
        array = array.dictionary_encode()
    index: dict[str, int] = {}
    # two dictionary entries may make one name: they get one code
    remap = np.array([index.setdefault(str(n), len(index)) for n in array.dictionary.to_pylist()]
                     + [index.setdefault("None", len(index))], dtype=np.int64)
    codes = array.indices.fill_null(len(remap) - 1).to_numpy(zero_copy_only=False)
    return list(index), remap[codes]


def _empty_metrics() -> pd.DataFrame:
    return pd.DataFrame({
        "run_id": pd.Series(dtype="int64"), "family": pd.Categorical([]),
        "variant": pd.Categorical([]), "point": pd.Categorical([]),
        "repetition": pd.Series(dtype="int64"), "kernel_view": pd.Series(dtype="bool"),
        "probe": pd.Categorical([]), "metric": pd.Categorical([]),
        "key": pd.Series(dtype="str"), "value": pd.Series(dtype="float64")})


def _load_metrics(run_dir: str, runs: pd.DataFrame) -> pd.DataFrame:
    """metrics.parquet joined with the runs it describes.  Like samples, a
    run's rows count only when the manifest lists it as ok; a run that was
    interrupted after its rows were written and then re-run on resume has
    two blocks of rows, and the later one (the run that finished) counts."""
    path = os.path.join(run_dir, store.METRICS)
    if not os.path.exists(path):
        return _empty_metrics()
    try:
        table = _read_parquet(path, list(store.METRIC_COLUMNS))
    except Exception as e:          # pyarrow raises several types for a bad file
        raise store.ResultsError(f"{path}: unreadable probe metrics ({_one_line(e)}); delete "
                                 "it to read the folder without the kernel view") from None
    frame = table.to_pandas()
    run_id = frame["run_id"].to_numpy(dtype=np.int64)
    # rows of one run are written together: a second block of the same run_id
    # is that run again, after a resume
    block = np.concatenate([[0], np.cumsum(run_id[1:] != run_id[:-1])]) if run_id.size else run_id
    last_block = pd.Series(block).groupby(run_id).transform("max").to_numpy() \
        if run_id.size else block
    ok = runs[runs["status"] == store.OK].set_index("run_id")
    frame = frame[(block == last_block) & np.isin(run_id, ok.index.to_numpy())]
    base = ok.loc[frame["run_id"].to_numpy()].reset_index()
    probe, metric = frame["probe"].astype(str), frame["metric"].astype(str)
    return pd.DataFrame({
        **_run_keys(base),
        "probe": pd.Categorical(probe, categories=list(dict.fromkeys(probe))),
        "metric": pd.Categorical(metric, categories=list(dict.fromkeys(metric))),
        "key": pd.Series(frame["key"].astype(str).to_numpy(), dtype="str"),
        "value": frame["value"].to_numpy(dtype=np.float64),
    })


def load_wakeups(run: Run, run_ids=None, missing: str = "raise") -> pd.DataFrame:
    """The probes' wake-up records (one row per wake-up of a run's threads
    in its measured window) of the ok runs listed, or of every ok run that
    has them: run_id, waking_to_run_ns, wakeup_to_run_ns, tid, waker_cpu,
    run_cpu, family, variant, point, repetition.  Files are read on first
    use and kept with the Run.  A file the manifest lists but that is gone
    raises lab.store.ResultsError, or is left out with ``missing="skip"``."""
    parts = wakeup_columns(run, run_ids, missing)
    info = run.runs.set_index("run_id")[["family", "variant", "point", "repetition"]]
    if parts:
        out = pd.DataFrame({
            "run_id": np.concatenate([np.full(len(p[WAKEUP_COLUMNS[0]]), i, dtype=np.int64)
                                      for i, p in parts.items()]),
            **{c: np.concatenate([p[c] for p in parts.values()]) for c in WAKEUP_COLUMNS}})
    else:
        out = pd.DataFrame({"run_id": pd.Series(dtype="int64"),
                            **{c: pd.Series(dtype="uint64" if c.endswith("_ns") else "int64")
                               for c in WAKEUP_COLUMNS}})
    joined = info.loc[out["run_id"].to_numpy()].reset_index(drop=True)
    for col in ("family", "variant", "point", "repetition"):
        out[col] = joined[col].to_numpy() if col == "repetition" else joined[col].array
    return out


def wakeup_columns(run: Run, run_ids=None,
                   missing: str = "raise") -> dict[int, dict[str, np.ndarray]]:
    """load_wakeups() as arrays, before any table is made: run_id -> that
    run's records (WAKEUP_COLUMNS -> array), in the order asked for.  A
    summary per cell needs no table, and making one per run, or joining
    the runs' columns to every record, costs more than reading the files."""
    if missing not in ("raise", "skip"):
        raise ValueError(f"missing: 'raise' or 'skip', not {missing!r}")
    files = {int(r["id"]): r.get("kernel_file") for r in run.manifest.get("runs") or []
             if r.get("status") == store.OK and r.get("kernel_file")}
    ids = list(files) if run_ids is None else [int(i) for i in run_ids if int(i) in files]
    unread = [i for i in ids if i not in run._wakeups]
    for run_id, records in zip(unread, _read_in_threads(
            lambda i: _read_wakeups(os.path.join(run.path, files[i]), i, missing), unread)):
        if records is not None:
            run._wakeups[run_id] = records
    return {i: run._wakeups[i] for i in ids if i in run._wakeups}


def _read_in_threads(read: Callable[[Any], Any], items: list) -> list:
    """[read(item) for item in items], a thread per CPU: pyarrow reads a file
    without the GIL, and a run has hundreds of small ones.  In order, so a
    damaged folder still names its first bad file."""
    if len(items) < 2:
        return [read(i) for i in items]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(min(len(os.sched_getaffinity(0)), 8)) as pool:
        return list(pool.map(read, items))


def _read_wakeups(path: str, run_id: int, missing: str) -> dict[str, np.ndarray] | None:
    try:
        table = _read_parquet(path)
    except FileNotFoundError:
        if missing == "skip":
            return None
        raise store.ResultsError(
            f"{path}: missing, but the manifest lists it as the wake-ups of run {run_id}; "
            "pass missing=\"skip\" to leave those runs out") from None
    except Exception as e:
        if missing == "skip":
            return None
        raise store.ResultsError(f"{path}: unreadable wake-ups of run {run_id} "
                                 f"({_one_line(e)}); pass missing=\"skip\" to leave those "
                                 "runs out") from None
    absent = [c for c in WAKEUP_COLUMNS if c not in table.column_names]
    if absent:
        raise store.ResultsError(f"{path}: wake-up records lack {', '.join(absent)}")
    return {c: table.column(c).to_numpy() for c in WAKEUP_COLUMNS}
