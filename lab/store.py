"""Stored results: one folder per suite run.

    results/<YYYYmmdd-HHMMSS>-<suite>/
        manifest.json       what ran, where, with which versions; per-run status
        suite.toml          the suite file as it was when the run started
        samples/run-NNNN.parquet   one file per finished run: metric, sample, value
        metrics.parquet     what the kernel saw per run (probes): run_id, probe,
                            metric, key ("" for the run's total), value
        kernel/run-NNNN-wakeups.parquet   each wake-up of the run's threads

Every file is written to a temporary name and renamed into place, so a
reader (or a Ctrl-C) never sees half a file; the manifest is rewritten after
each run and is the commit point: a samples file counts once the manifest
lists its run as ``ok``.  The manifest carries a format version; readers
refuse versions they do not know.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
from typing import Any

FORMAT = "upcall-lab/results"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUITE_COPY = "suite.toml"
SAMPLES_DIR = "samples"
METRICS = "metrics.parquet"     # the probes' per-run counts: run_id, probe, metric, key, value
KERNEL_DIR = "kernel"           # the probes' per-run records (wake-ups)

# run status values
PENDING, OK, FAILED, TIMEOUT, INTERRUPTED = "pending", "ok", "failed", "timeout", "interrupted"


class ResultsError(ValueError):
    """A results folder the lab cannot read; the message says why."""


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_output(path: str):
    """Yield a temporary path beside path; on success it replaces path, so
    readers see the old file or the new one, never half of it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        os.fchmod(fd, 0o666 & ~_umask())     # mkstemp's 0600 is for secrets
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(path: str, data: bytes) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def create_run_dir(root: str, suite_name: str) -> str:
    """Make results/<time>-<suite>/ (unique even within one second)."""
    os.makedirs(root, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(100):
        name = f"{stamp}-{suite_name}" + (f"-{n}" if n else "")
        path = os.path.join(root, name)
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        os.mkdir(os.path.join(path, SAMPLES_DIR))
        return path
    raise ResultsError(f"{root}: cannot create a unique run folder for {suite_name}")


def write_manifest(run_dir: str, manifest: dict[str, Any]) -> None:
    data = json.dumps(manifest, indent=1, sort_keys=False, default=str).encode()
    atomic_write(os.path.join(run_dir, MANIFEST), data + b"\n")


def read_manifest(run_dir: str) -> dict[str, Any]:
    path = os.path.join(run_dir, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ResultsError(f"{run_dir}: no {MANIFEST}: not a results folder of the lab") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: unreadable: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ResultsError(f"{path}: not an upcall-lab results manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ResultsError(
            f"{path}: results format version {version!r} is not supported "
            f"(this lab reads version {FORMAT_VERSION}); use the lab version that wrote it "
            f"({manifest.get('package_version', 'unknown')}) or re-run the suite")
    return manifest


def samples_path(run_id: int) -> str:
    return os.path.join(SAMPLES_DIR, f"run-{run_id:04d}.parquet")


def write_parquet(run_dir: str, rel: str, columns: dict[str, Any]) -> str:
    """Write one Parquet table atomically at run_dir/rel; returns rel."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(os.path.dirname(os.path.join(run_dir, rel)), exist_ok=True)
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(columns), sink, compression="zstd")
    atomic_write(os.path.join(run_dir, rel), sink.getvalue().to_pybytes())
    return rel


def write_samples(run_dir: str, run_id: int, series: dict[str, Any]) -> str:
    """Store a run's sample arrays as one tidy table (metric, sample, value)."""
    import numpy as np
    import pyarrow as pa

    metrics, index, values = [], [], []
    for metric, arr in series.items():
        arr = np.asarray(arr, dtype=np.float64)
        metrics.append(np.full(arr.shape[0], metric, dtype=object))
        index.append(np.arange(arr.shape[0], dtype=np.int64))
        values.append(arr)
    return write_parquet(run_dir, samples_path(run_id), {
        "metric": pa.array(np.concatenate(metrics) if metrics else [], pa.string()).dictionary_encode(),
        "sample": pa.array(np.concatenate(index) if index else [], pa.int64()),
        "value": pa.array(np.concatenate(values) if values else [], pa.float64()),
    })


def write_metrics(run_dir: str, rows: list[tuple[int, str, str, str, float]]) -> None:
    """Rewrite metrics.parquet with every run's probe rows so far."""
    import pyarrow as pa

    columns = list(zip(*rows)) if rows else [[], [], [], [], []]
    write_parquet(run_dir, METRICS, {
        "run_id": pa.array(columns[0], pa.int64()),
        "probe": pa.array(columns[1], pa.string()).dictionary_encode(),
        "metric": pa.array(columns[2], pa.string()).dictionary_encode(),
        "key": pa.array(columns[3], pa.string()),
        "value": pa.array([float(v) for v in columns[4]], pa.float64()),
    })


def read_metric_rows(run_dir: str) -> list[tuple[int, str, str, str, float]]:
    """metrics.parquet as rows (empty if there is none yet): for resuming."""
    import pyarrow.parquet as pq

    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return []
    table = pq.read_table(path).to_pydict()
    return list(zip(table["run_id"], table["probe"], table["metric"], table["key"],
                    table["value"]))


def write_wakeups(run_dir: str, run_id: int, records: Any) -> str:
    """A run's wake-up records (a NumPy structured array) as Parquet."""
    rel = os.path.join(KERNEL_DIR, f"run-{run_id:04d}-wakeups.parquet")
    return write_parquet(run_dir, rel, {name: records[name] for name in records.dtype.names})


def latest_run_dir(root: str) -> str:
    """The newest folder under root holding a manifest."""
    try:
        names = sorted(os.listdir(root), reverse=True)
    except FileNotFoundError:
        raise ResultsError(f"{root}: no results yet; run `lab run experiments/quick.toml`") from None
    for name in names:
        if os.path.isfile(os.path.join(root, name, MANIFEST)):
            return os.path.join(root, name)
    raise ResultsError(f"{root}: no results yet; run `lab run experiments/quick.toml`")


def resolve_run_dir(arg: str, root: str = "results") -> str:
    """A RUN_DIR argument: a folder, or ``latest`` for the newest under root."""
    if arg == "latest":
        return latest_run_dir(root)
    if not os.path.isdir(arg):
        raise ResultsError(f"{arg}: no such results folder")
    return arg
