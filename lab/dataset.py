"""``lab dataset RUN_DIR... --out DIR``: results folders from any number of
hosts gathered into one Parquet dataset, hive-partitioned by host and
kernel, that DuckDB reads in place (analysis.dataset) and Spark or Trino
read at fleet scale.

    DIR/dataset.json                                    what this folder is (DATASET_FORMAT)
    DIR/<table>/host=<host id>/kernel=<release>/<suite run id>.parquet

One file per (table, suite run).  The tables and their columns are
SCHEMA's: ``samples`` (Run.samples of analysis, one row per sample),
``runs`` (one row per planned run: lab.store.RunRecord's fields),
``metrics`` (the kernel view, Run.metrics) and ``environment`` (the
manifest's fingerprint, one row per flat key).  Every row carries
``suite_run``, the suite run's identity (suite_run_id): re-gathering a run,
resumed since or not, replaces its files instead of adding rows.  Files are
staged under DIR/.staging-<pid>/ and renamed into place together, signals
held, so a Ctrl-C leaves the dataset as it was.  Collecting the results
folders from the hosts is the fleet's own tools' job (rsync, object
storage...): this command reads folders on this machine.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import types
import typing
from typing import Any

DATASET_FORMAT = "upcall-lab/dataset"
DATASET_VERSION = 1
MARKER = "dataset.json"
TABLES = ("samples", "runs", "metrics", "environment")
PARTITIONS = ("host", "kernel")         # hive partition columns, in path order
STAGING_PREFIX = ".staging-"
SUFFIX = ".parquet"

# The fingerprint keys (lab/environment.py) that name a host.  The
# fingerprint records no hostname or machine id (a manifest is meant to be
# shared, and hostnames are reused and renamed), so a host is named by what
# the lab measures on: its architecture, CPU model and count, SMT and NUMA
# shape, and the hypervisor it runs under.  Keys a reboot or a tuning
# changes (kernel, boot options, mitigations, cpuidle, frequency, noise) are
# left out: those are what a fleet compares across one host, and the kernel
# is a partition of its own.  Identical machines share a partition; their
# runs stay apart by suite_run.
HOST_KEYS = ("kernel.machine", "cpu.model", "cpu.online", "cpu.threads_per_core",
             "cpu.numa_nodes", "system.virtualization")

# the columns that tie a row to its run (analysis/_results.py _run_keys)
RUN_KEYS = ("run_id", "family", "variant", "point", "repetition", "kernel_view")


class DatasetError(ValueError):
    """A dataset folder, or an input, the command refuses; one line."""


@functools.lru_cache(maxsize=None)
def schema() -> dict[str, Any]:
    """table -> pyarrow.Schema: the dataset's one declaration of its
    columns.  Names are the results format's: samples are analysis's
    Run.samples (lab.store.SAMPLE_COLUMNS with their run's keys and unit),
    metrics are Run.metrics (lab.store.METRIC_COLUMNS with their run's
    keys), runs are lab.store.RunRecord's fields (``id`` as ``run_id``,
    as analysis names it) with the point, ``user_side`` (the run feeds
    the user-side numbers: analysis.run_sources) and ``throughput``."""
    import pyarrow as pa

    from analysis._results import METRIC_COLUMNS as RUN_METRIC_COLUMNS
    from lab import store

    keys = {"run_id": pa.int64(), "family": pa.string(), "variant": pa.string(),
            "point": pa.string(), "repetition": pa.int64(), "kernel_view": pa.bool_()}
    identity = [("suite_run", pa.string())]
    sample_types = {"metric": pa.string(), "sample": pa.int64(), "value": pa.float64()}
    samples = identity + list(keys.items()) + [("user_side", pa.bool_()), ("unit", pa.string())] \
        + [(c, sample_types[c]) for c in store.SAMPLE_COLUMNS]
    metric_types = {**keys, "probe": pa.string(), "metric": pa.string(), "key": pa.string(),
                    "value": pa.float64()}
    metrics = identity + [(c, metric_types[c]) for c in RUN_METRIC_COLUMNS]
    hints = typing.get_type_hints(store.RunRecord)
    runs = identity + [("suite", pa.string())] + [
        ("run_id" if f == "id" else f, _arrow_type(hints[f])) for f in store.run_fields()]
    runs += [("point", pa.string()), ("user_side", pa.bool_()), ("throughput", pa.float64())]
    # a fact's value as text (a string as itself, anything else as JSON) and as JSON
    environment = identity + [("key", pa.string()), ("value", pa.string()), ("json", pa.string())]
    return {name: pa.schema(cols) for name, cols in
            zip(TABLES, (samples, runs, metrics, environment))}


def _arrow_type(hint: Any) -> Any:
    """A RunRecord field's Arrow type: numbers, strings and flags as
    themselves, name -> number objects as maps, lists of strings as lists,
    and free-form objects (params) as JSON text."""
    import pyarrow as pa

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return _arrow_type(args[0])
    scalar = {int: pa.int64(), float: pa.float64(), str: pa.string(), bool: pa.bool_()}
    if hint in scalar:
        return scalar[hint]
    if typing.get_origin(hint) is list and args[0] in scalar:
        return pa.list_(scalar[args[0]])
    if typing.get_origin(hint) is dict and args[1] in scalar:
        return pa.map_(pa.string(), scalar[args[1]])
    return pa.string()      # JSON


def host_id(environment: dict[str, Any]) -> str:
    """A stable id of the host a fingerprint was taken on (HOST_KEYS)."""
    named = json.dumps({k: environment.get(k) for k in HOST_KEYS}, sort_keys=True)
    return hashlib.sha256(named.encode()).hexdigest()[:12]


def suite_run_id(manifest: dict[str, Any]) -> str:
    """A suite run's identity, the same wherever its folder was copied to
    and after a --resume: its suite, when it started, where (the whole
    fingerprint) and its plan (the runs' ids and parameters, fixed at the
    start).  Readable prefix, hashed rest."""
    suite = manifest["suite"].get("name") or "suite"
    started = manifest.get("started_at") or ""
    plan = [(r["id"], r["family"], r["variant"], r["params"], r["repetition"])
            for r in manifest["runs"]]
    digest = hashlib.sha256(json.dumps([suite, started, manifest.get("environment") or {}, plan],
                                       sort_keys=True, default=str).encode()).hexdigest()[:10]
    stamp = re.sub(r"[^0-9]", "", started)[:14]
    stamp = f"{stamp[:8]}-{stamp[8:]}-" if len(stamp) == 14 else ""
    return _path_safe(f"{stamp}{suite}-{digest}")


def _path_safe(text: str) -> str:
    """text as one path component that hive partitioning reads back as
    itself: characters outside [A-Za-z0-9._+-] become '_'."""
    text = re.sub(r"[^A-Za-z0-9._+-]", "_", text)
    return text if text not in ("", ".", "..") else "_"


def kernel_partition(environment: dict[str, Any]) -> str:
    return _path_safe(str(environment.get("kernel.release") or "unknown"))


# -- checks --------------------------------------------------------------------


def check_out(out: str) -> None:
    """--out is a dataset, an empty folder, or not there yet (its parent
    a folder): anything else is refused before a run is read."""
    if not os.path.exists(out):
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise DatasetError(f"--out {out}: {parent} is not a folder; give a folder to "
                               "create the dataset in")
        return
    if not os.path.isdir(out):
        raise DatasetError(f"--out {out}: not a folder; give a dataset folder, or a new name")
    marker = os.path.join(out, MARKER)
    if not os.path.exists(marker):
        if any(not n.startswith(STAGING_PREFIX) for n in os.listdir(out)):
            raise DatasetError(f"--out {out}: a folder that is not a lab dataset (no {MARKER}); "
                               "give a new or empty folder, or an existing dataset")
        return
    try:
        with open(marker, "rb") as f:
            meta = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{marker}: unreadable ({e}); give a new folder, or restore "
                           f"{MARKER}") from None
    if not isinstance(meta, dict) or meta.get("format") != DATASET_FORMAT:
        raise DatasetError(f"{marker}: not a lab dataset marker; give a new or empty folder")
    if meta.get("format_version") != DATASET_VERSION:
        raise DatasetError(f"{marker}: dataset version {meta.get('format_version')!r} is not "
                           f"supported (this lab writes version {DATASET_VERSION}); give a new "
                           "folder, or use the lab version that made it")


def _lock_held(run_dir: str) -> bool:
    """A runner holds the folder lock (lab.lock.folder) now.  Asked on a
    read-only descriptor and let go at once: gathering writes nothing into
    the folders it reads."""
    import fcntl

    from lab import lock
    try:
        fd = os.open(os.path.join(run_dir, lock.FOLDER_LOCK), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def read_source(arg: str):
    """A RUN_DIR argument as a loaded analysis.Run, or DatasetError /
    lab.store.ResultsError saying why it cannot be gathered."""
    from analysis import load_run
    from lab import store
    run_dir = store.resolve_run_dir(arg)
    manifest = store.read_manifest(run_dir)
    if manifest.get("status") == "running" and _lock_held(run_dir):
        raise DatasetError(f"{run_dir}: still being written (status running, its folder "
                           "lock held by a lab run); gather it once the run has ended")
    if not any(r.get("status") == store.OK for r in manifest["runs"]):
        raise DatasetError(f"{run_dir}: no finished run to gather ({len(manifest['runs'])} "
                           "planned, none ok); finish it (lab run --resume) or leave it out")
    return load_run(run_dir)


# -- the tables of one suite run -------------------------------------------------


def tables_of(run) -> dict[str, Any]:
    """table -> pyarrow.Table of one suite run (an analysis.Run), in SCHEMA."""
    import pyarrow as pa

    from analysis import run_sources
    from lab import store
    sch = schema()
    ident = suite_run_id(run.manifest)
    src = run_sources(run)
    user_side = dict(zip(src["run_id"].astype(int), src["user_side"].astype(bool)))

    def table(name: str, columns: dict[str, Any], n: int) -> Any:
        columns = {"suite_run": [ident] * n, **columns}
        return pa.table({f.name: pa.array(columns[f.name], f.type) for f in sch[name]},
                        schema=sch[name])

    s = run.samples
    samples = table("samples", {
        **{k: _plain(s[k]) for k in RUN_KEYS},
        "user_side": [user_side.get(int(i), False) for i in s["run_id"]],
        "metric": _plain(s["metric"]), "unit": _plain(s["unit"]),
        "sample": s["sample"].to_numpy(), "value": s["value"].to_numpy()}, len(s))

    m = run.metrics
    metrics = table("metrics", {c: _plain(m[c]) for c in sch["metrics"].names[1:]}, len(m))

    meta = run.manifest["runs"]
    runs_cols: dict[str, Any] = {"suite": [run.name] * len(meta)}
    for field in store.run_fields():
        values = store.run_column(meta, field)
        arrow = sch["runs"].field("run_id" if field == "id" else field).type
        if pa.types.is_map(arrow):
            values = [list(v.items()) for v in values]
        elif pa.types.is_string(arrow) and field == "params":
            values = [json.dumps(v, sort_keys=False) for v in values]
        runs_cols["run_id" if field == "id" else field] = values
    runs_cols["point"] = _plain(run.runs["point"])
    runs_cols["user_side"] = [user_side.get(int(r["id"])) for r in meta]
    runs_cols["throughput"] = run.runs["throughput"].to_numpy()
    runs = table("runs", runs_cols, len(meta))

    env = run.environment
    environment = table("environment", {
        "key": list(env),
        "value": [v if isinstance(v, str) else json.dumps(v) for v in env.values()],
        "json": [json.dumps(v) for v in env.values()]}, len(env))
    return dict(zip(TABLES, (samples, runs, metrics, environment)))


def _plain(series) -> list:
    """A pandas column (categorical, nullable) as Python values, None for missing."""
    return [None if v is None or v != v else v for v in series.astype(object).tolist()]


# -- writing ---------------------------------------------------------------------


def partition_dir(out: str, table: str, run) -> str:
    return os.path.join(out, table, f"host={host_id(run.environment)}",
                        f"kernel={kernel_partition(run.environment)}")


def gather(run_args: list[str], out: str) -> list[tuple[str, str, str]]:
    """Read every RUN_DIR (all checked before anything is written), stage
    their files, then rename them into place.  Returns (suite run id, host,
    kernel) per run gathered."""
    import shutil

    import pyarrow.parquet as pq

    from lab import signals, store
    check_out(out)
    runs = [read_source(a) for a in run_args]
    by_id: dict[str, Any] = {}
    for run in runs:        # one folder given twice, or a copy of it, is one suite run
        by_id.setdefault(suite_run_id(run.manifest), run)
    created = not os.path.exists(out)
    os.makedirs(out, exist_ok=True)
    staging = os.path.join(out, f"{STAGING_PREFIX}{os.getpid()}")
    os.makedirs(staging)
    done = False
    try:
        moves = []
        for ident, run in by_id.items():
            for name, tab in tables_of(run).items():
                final = os.path.join(partition_dir(out, name, run), ident + SUFFIX)
                staged = os.path.join(staging, os.path.relpath(final, out))
                os.makedirs(os.path.dirname(staged), exist_ok=True)
                pq.write_table(tab, staged, compression="zstd")
                moves.append((staged, final))
        marker = json.dumps({"format": DATASET_FORMAT, "format_version": DATASET_VERSION,
                             "results_format_version": store.FORMAT_VERSION,
                             "tables": list(TABLES), "partitions": list(PARTITIONS)},
                            indent=1).encode() + b"\n"
        with signals.held():
            for ident in by_id:         # the suite run's files elsewhere: its old partition
                for old in _files_of(out, ident):
                    os.unlink(old)
            for staged, final in moves:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(staged, final)
            store.atomic_write(os.path.join(out, MARKER), marker)
        done = True
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not done:
            shutil.rmtree(out, ignore_errors=True)      # ours, and holding nothing yet
    return [(ident, host_id(r.environment), kernel_partition(r.environment))
            for ident, r in by_id.items()]


def _files_of(out: str, ident: str) -> list[str]:
    import glob
    return [p for table in TABLES
            for p in glob.glob(os.path.join(glob.escape(out), table, "host=*", "kernel=*",
                                            glob.escape(ident) + SUFFIX))]


# -- the command -----------------------------------------------------------------


HELP = """\
Gather results folders (from any number of hosts: copy them here first, with
rsync, object storage or whatever the fleet uses) into one Parquet dataset,
hive-partitioned by host and kernel:

  OUT/<table>/host=<host id>/kernel=<kernel.release>/<suite run>.parquet

tables: samples (one row per sample), runs (one row per planned run: params,
counters, status), metrics (the kernel view), environment (the fingerprint,
one row per key).  The host id hashes the fingerprint's hardware keys
({host_keys}).  Gathering a suite run again replaces its rows; the
files are renamed into place together, so a Ctrl-C leaves OUT as it was.
DuckDB reads OUT in place (analysis.dataset.connect(OUT)), Spark and Trino
read it as a hive-partitioned table.  Bad input: exit status 2."""

EPILOG = """\
examples:
  lab dataset results/20261203-142720-quick --out fleet
  lab dataset hosts/*/results/* --out /srv/lab-dataset
  python -c "from analysis.dataset import connect, medians; print(medians(connect('fleet')))"

in SQL (DuckDB; Spark and Trino read the same folders as hive-partitioned tables):
  SELECT host, kernel, family, variant, point, metric, median(value)
  FROM read_parquet('fleet/samples/**/*.parquet', hive_partitioning = true)
  WHERE user_side GROUP BY ALL
"""


def add_parser(sub, formatter_class, func) -> None:
    """The ``dataset`` subcommand on lab's parser; func: lab.cli.cmd_dataset."""
    p = sub.add_parser("dataset", formatter_class=formatter_class,
                       help="gather runs from many hosts into one Parquet dataset",
                       description=HELP.format(host_keys=", ".join(HOST_KEYS)), epilog=EPILOG)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="results folders `lab run` made (or `latest`, under results/)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the dataset folder: created, or an existing dataset to add to")
    p.set_defaults(func=func)
