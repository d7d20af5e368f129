"""Stored results: one folder per suite run.  This module owns the results
format: its version, its schema, writing it and reading it (the runner,
analysis and the tests' builders go through it); CHANGELOG.md keeps its
history, and tests/data/results-v1/ is a folder every later version must
still read, or refuse in one line.

    results/<YYYYmmdd-HHMMSS>-<suite>/
        manifest.json       what ran, where, with which versions; per-run status (Manifest)
        suite.toml          the suite file as it was when the run started
        samples/run-NNNN.parquet   one file per finished run (SAMPLE_COLUMNS)
        metrics.parquet     what the kernel saw per run, the probes' counts (METRIC_COLUMNS)
        kernel/run-NNNN-wakeups.parquet   each wake-up of the run's threads (WAKEUP_COLUMNS)

Every file is written to a temporary name and renamed into place, so a
reader (or a Ctrl-C) never sees half a file; the manifest is rewritten after
each run and is the commit point: a samples file counts once the manifest
lists its run as ``ok``.  The manifest carries a format version; readers
refuse versions they do not know, and manifests that do not hold what they
read (validate_manifest): a damaged folder is one line, and a file a
manifest names must lie inside its folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import functools
import json
import os
import stat
import tempfile
import types
import typing
from typing import Any, Required, TypedDict

FORMAT = "upcall-lab/results"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SUITE_COPY = "suite.toml"
SAMPLES_DIR = "samples"
METRICS = "metrics.parquet"     # the probes' per-run counts
KERNEL_DIR = "kernel"           # the probes' per-run records (wake-ups)

# the files' columns: written here, read by analysis/_results.py
SAMPLE_COLUMNS = ("metric", "sample", "value")
METRIC_COLUMNS = ("run_id", "probe", "metric", "key", "value")     # "" key: the run's total
# a wake-up record (lab/probes/wakeups.c, as lab.probes reads it)
WAKEUP_COLUMNS = ("waking_to_run_ns", "wakeup_to_run_ns", "tid", "waker_cpu", "run_cpu")

# run status values
PENDING, OK, FAILED, TIMEOUT, INTERRUPTED = "pending", "ok", "failed", "timeout", "interrupted"
STATUSES = (PENDING, OK, FAILED, TIMEOUT, INTERRUPTED)


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
    """Write manifest (made by new_manifest) as run_dir's manifest.json."""
    data = json.dumps(manifest, indent=1, sort_keys=False, default=str).encode()
    atomic_write(os.path.join(run_dir, MANIFEST), data + b"\n")


def read_manifest(run_dir: str) -> dict[str, Any]:
    """The manifest of run_dir, its format version and schema checked
    (validate_manifest): every reader may then index it without guarding."""
    path = os.path.join(run_dir, MANIFEST)
    fix = damaged_fix(run_dir)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ResultsError(f"{run_dir}: no {MANIFEST}: not a results folder of the lab; "
                           "give a folder `lab run` made, or `latest`") from None
    except OSError as e:
        raise ResultsError(f"{path}: unreadable: {e.strerror or e}; check the file and its "
                           f"permissions (ls -l {path})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ResultsError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                           f"{e.start}); {fix}") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON ({e}); {fix}") from None
    except RecursionError:
        raise ResultsError(f"{path}: not a manifest: JSON nested too deeply; {fix}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ResultsError(f"{path}: not an upcall-lab results manifest; give a folder "
                           "`lab run` made, or `latest`")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ResultsError(
            f"{path}: results format version {version!r} is not supported "
            f"(this lab reads version {FORMAT_VERSION}); use the lab version that wrote it "
            f"({manifest.get('package_version', 'unknown')}) or re-run the suite")
    validate_manifest(manifest, run_dir)
    return manifest


# -- the manifest's schema ---------------------------------------------------------
#
# Declared once, here, as the types below: new_manifest writes by them (the
# runner and the tests' builders make every manifest with it), and
# read_manifest checks by them (validate_manifest), so show, report, the
# notebooks and --resume may index what they declare without guarding and a
# damaged folder is one line (ResultsError), never a KeyError deep in pandas.
# A key is Required or absent-means-older-folder; keys not declared are
# notes for people, left alone.  Adding a key is one line here (and one in
# CHANGELOG.md).  A run's fields are RunRecord's (below; what --resume
# rebuilds with lab.runner.PlannedRun(**run)).


class KernelViewRecord(TypedDict, total=False):
    """``kernel_view``: the probes of the suite run, or why there were none."""
    enabled: bool
    probes: list[str]
    reason: str | None
    headers: str | None


class VariantRecord(TypedDict, total=False):
    """``families[name].variants[name]``: lab.model.Family.describe()."""
    headline: Required[str]
    metrics: dict[str, dict]
    help: str
    probes: list[str]           # the probes its probed runs attach (probe_cost)


class FamilyRecord(TypedDict, total=False):
    """``families[name]``: lab.model.Family.describe(); the report reads a
    family here, never from the live modules."""
    variants: Required[dict[str, VariantRecord]]
    params: dict[str, dict]
    reference: str | None
    summary: str
    seeds: str


class SelectionRecord(TypedDict, total=False):
    """``suite.families[name]``: the swept values, in the suite's order
    (the report follows it), and every table as written."""
    variants: list[str]
    values: dict[str, list]
    tables: list[dict]


class SuiteRecord(TypedDict, total=False):
    """``suite``: the suite file as run (its settings: lab.suite.SUITE_SETTINGS)."""
    settings: Required[dict[str, Any]]
    name: str
    path: str
    description: str | None
    families: dict[str, SelectionRecord]


class SkippedRecord(TypedDict, total=False):
    """``skipped[i]``: a point the runner did not run, and why."""
    family: Required[str]
    variant: Required[str]
    params: dict
    reason: str | None


class Manifest(TypedDict, total=False):
    """manifest.json, its keys in the order they are written."""
    format: Required[str]
    format_version: Required[int]
    suite: Required[SuiteRecord]
    package_version: str
    git_revision: str
    started_at: str | None
    ended_at: str | None
    status: str
    environment: dict
    capabilities: dict
    kernel_view: KernelViewRecord | None    # absent: written before the lab had probes
    families: Required[dict[str, FamilyRecord]]
    skipped: list[SkippedRecord]
    runs: Required[list]                    # of RunRecord's fields, checked strictly
    stopped_by: str | None                  # what ended a run that did not complete
    resume_hint: str | None                 # how to finish it


def new_manifest(**fields: Any) -> dict[str, Any]:
    """A manifest of this format version holding fields (Manifest's keys
    but the format's own two), in Manifest's order: how the runner and the
    tests' builders make one."""
    keys = _record_keys(Manifest)
    unknown = [k for k in fields if k not in keys or k in ("format", "format_version")]
    if unknown:
        raise TypeError(f"new_manifest: {unknown[0]!r} is not a manifest key "
                        f"(lab.store.Manifest)")
    fields.update(format=FORMAT, format_version=FORMAT_VERSION)
    return {key: fields[key] for key in keys if key in fields}


@functools.lru_cache(maxsize=None)
def _record_keys(record: type) -> dict[str, tuple[Any, bool]]:
    """A TypedDict's keys: key -> (type hint, required).  Read through
    include_extras: under ``from __future__ import annotations`` Python
    3.11 does not see Required in __required_keys__."""
    out = {}
    for key, hint in typing.get_type_hints(record, include_extras=True).items():
        required = typing.get_origin(hint) is Required
        out[key] = (typing.get_args(hint)[0] if required else hint, required)
    return out


class _Damaged(Exception):
    """Where in the manifest (a JSON path such as ``runs[3].id``, "" for the
    top level) and what is wrong there."""

    def __init__(self, where: str, what: str):
        super().__init__(where, what)
        self.where, self.what = where, what


def damaged_fix(run_dir: str) -> str:
    """How to get a readable folder back when its manifest is damaged."""
    return (f"restore {MANIFEST} from a copy, or run the suite again: "
            f"lab run {os.path.join(run_dir, SUITE_COPY)}")


@dataclasses.dataclass
class RunRecord:
    """One run in the manifest's ``runs``: what was planned, then how it
    went.  The one declaration of a stored run's fields: the runner plans
    with it (lab.runner.PlannedRun) and validate_manifest checks by it."""
    id: int
    family: str
    variant: str
    params: dict[str, Any]
    repetition: int
    cpu: int
    peer_cpu: int
    kernel_view: bool = False           # probes attached to this run
    probes: list[str] | None = None     # which (kernel_view runs): None, all of the session's
    status: str = PENDING
    reason: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    window_ns: int | None = None
    ops: int | None = None              # operations in the measured window
    samples_file: str | None = None
    kernel_file: str | None = None
    n_samples: dict[str, int] = dataclasses.field(default_factory=dict)
    counters: dict[str, float] = dataclasses.field(default_factory=dict)
    # other lab measurements seen on the machine as the run began or ended
    alongside: list[str] | None = None


@functools.lru_cache(maxsize=None)
def _run_schema() -> tuple[dict[str, Any], frozenset[str]]:
    """(field -> type hint, required fields) of RunRecord."""
    hints = typing.get_type_hints(RunRecord)
    fields = dataclasses.fields(RunRecord)
    required = frozenset(f.name for f in fields if f.default is dataclasses.MISSING
                         and f.default_factory is dataclasses.MISSING)
    return {f.name: hints[f.name] for f in fields}, required


def run_fields() -> tuple[str, ...]:
    """The fields of a stored run, in order (RunRecord's)."""
    return tuple(_run_schema()[0])


def run_column(runs: list[dict[str, Any]], name: str) -> list[Any]:
    """Field name of every stored run, RunRecord's default where a run
    lacks it (a folder written before the field existed)."""
    field = {f.name: f for f in dataclasses.fields(RunRecord)}[name]
    if field.default_factory is not dataclasses.MISSING:
        return [r[name] if name in r else field.default_factory() for r in runs]
    if field.default is dataclasses.MISSING:
        return [r[name] for r in runs]      # required: validate_manifest saw it
    return [r.get(name, field.default) for r in runs]


def validate_manifest(manifest: dict[str, Any], run_dir: str) -> None:
    """Raise ResultsError, naming the first damaged field, unless manifest
    (read from run_dir) has the schema every reader relies on."""
    try:
        _validate(manifest, run_dir)
    except _Damaged as e:
        where = f"{e.where}: " if e.where else ""
        raise ResultsError(f"{os.path.join(run_dir, MANIFEST)}: {where}{e.what}; "
                           f"{damaged_fix(run_dir)}") from None


def _validate(manifest: dict[str, Any], run_dir: str) -> None:
    _check_type(manifest, Manifest, "")
    suite = manifest["suite"]
    from lab.suite import SUITE_SETTINGS  # one declaration of the settings and their types
    for setting in SUITE_SETTINGS:
        if setting.name in suite["settings"] and setting.default is not None:
            _check_type(suite["settings"][setting.name], type(setting.default),
                        f"suite.settings.{setting.name}")
    families = manifest["families"]
    for name, family in families.items():
        for param, described in (family.get("params") or {}).items():
            _check_type(described.get("axis", True), bool,
                        f"families.{name}.params.{param}.axis")
    for i, entry in enumerate(manifest.get("skipped") or []):
        _check_described(families, entry, f"skipped[{i}]")
    hints, required = _run_schema()
    first_with_id: dict[int, int] = {}
    for i, run in enumerate(manifest["runs"]):
        where = f"runs[{i}]"
        _check_type(run, dict, where)
        unknown = [k for k in run if k not in hints]
        if unknown:
            raise _Damaged(where, f"unknown field {unknown[0]!r} (a run has: "
                                  f"{', '.join(hints)})")
        missing = [k for k in hints if k in required and k not in run]
        if missing:
            raise _Damaged(where, f"no {missing[0]!r} (a run must have: "
                                  f"{', '.join(k for k in hints if k in required)})")
        for key, value in run.items():
            _check_type(value, hints[key], f"{where}.{key}")
        if run["id"] in first_with_id:
            raise _Damaged(f"{where}.id", f"{run['id']} is also the id of "
                                          f"runs[{first_with_id[run['id']]}]")
        first_with_id[run["id"]] = i
        _check_described(families, run, where)
        status = run.get("status", PENDING)
        if status not in STATUSES:
            raise _Damaged(f"{where}.status",
                           f"{_shown(status)} is not one of {', '.join(STATUSES)}")
        # every *_file field names a file the readers open: it must stay inside the folder
        files = {key: run[key] for key in hints
                 if key.endswith("_file") and run.get(key) is not None}
        if status == OK:
            files.setdefault("samples_file", run_samples_file(run))
        for key, rel in files.items():
            problem = _file_problem(run_dir, rel)
            if problem:
                raise _Damaged(f"{where}.{key}", problem)


def _check_described(families: dict[str, Any], entry: dict[str, Any], where: str) -> None:
    """entry's family and variant are described under families (the report
    reads their metrics and headline there, never from the live modules)."""
    family, variant = entry["family"], entry["variant"]
    if family not in families:
        raise _Damaged(f"{where}.family", f"{_shown(family)} is not described under families "
                                          f"(it has: {', '.join(families) or 'none'})")
    if variant not in families[family]["variants"]:
        raise _Damaged(f"{where}.variant", f"{_shown(variant)} is not a variant of {family} under "
                                           f"families.{family}.variants")


def _check_record(obj: dict[str, Any], record: type, where: str) -> None:
    """obj's keys that record (a TypedDict) declares have their types, and
    it has the required ones; other keys are left alone (notes for people)."""
    for key, (hint, required) in _record_keys(record).items():
        if key in obj:
            _check_type(obj[key], hint, f"{where}.{key}" if where else key)
        elif required:
            raise _Damaged(where, f"no {key!r}")


def _check_type(value: Any, hint: Any, where: str) -> None:
    """value (parsed JSON) is of the type hint (int, str | None,
    dict[str, int], Any...), or _Damaged says where it is not."""
    if hint is Any:
        return
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        for h in args:
            if _is_type(value, h):
                _check_type(value, h, where)
                return
        raise _Damaged(where, f"{_shown(value)} is not {_describe(hint)}")
    if not _is_type(value, hint):
        raise _Damaged(where, f"{_shown(value)} is not {_describe(hint)}")
    if typing.is_typeddict(hint):
        _check_record(value, hint, where)
    elif origin is dict and args:
        for k, v in value.items():
            _check_type(v, args[1], f"{where}.{k}")
    elif origin is list and args:
        for i, v in enumerate(value):
            _check_type(v, args[0], f"{where}[{i}]")


def _is_type(value: Any, hint: Any) -> bool:
    """The outer type only, as JSON has it: true is not a number, 1 is a float."""
    hint = typing.get_origin(hint) or hint
    if hint is Any:
        return True
    if typing.is_typeddict(hint):
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


# a JSON type's name, alone and in the plural
_TYPE_NAMES = {dict: ("an object", "objects"), list: ("a list", "lists"),
               str: ("a string", "strings"), int: ("an integer", "integers"),
               float: ("a number", "numbers"), bool: ("true or false", "booleans"),
               type(None): ("null", "nulls")}


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in args)
    if origin is dict and args and _json_type(args[1]) in _TYPE_NAMES:
        return f"an object of {_TYPE_NAMES[_json_type(args[1])][1]}"
    if origin is list and args and _json_type(args[0]) in _TYPE_NAMES:
        return f"a list of {_TYPE_NAMES[_json_type(args[0])][1]}"
    return _TYPE_NAMES.get(_json_type(origin or hint), (getattr(hint, "__name__", str(hint)),))[0]


def _json_type(hint: Any) -> Any:
    """A record (TypedDict) is a JSON object."""
    return dict if typing.is_typeddict(hint) else hint


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _file_problem(run_dir: str, rel: str) -> str | None:
    """Why rel, a run's file as the manifest names it, is not a file inside
    run_dir, or None.  A manifest is data: ``../../etc/passwd`` is refused,
    not opened."""
    if not rel:
        return "an empty path"
    if "\0" in rel:
        return f"{_shown(rel)} holds a NUL byte"
    if os.path.isabs(rel):
        return f"{_shown(rel)} is an absolute path (a run's files are named relative to its folder)"
    if ".." in rel.split(os.sep):
        return f"{_shown(rel)} goes through '..' (a run's files are named downward from its folder)"
    root = os.path.realpath(run_dir)
    real = os.path.realpath(os.path.join(root, rel))
    if real == root or os.path.commonpath([root, real]) != root:
        return f"{_shown(rel)} leads to {real}, outside the results folder (a symbolic link)"
    return None


def require_writable(path: str, fix: str | None = None) -> None:
    """Raise ResultsError (one line: what, why, and ``fix``) unless the
    folder path exists and this user may create files in it.  For
    commands that write into a results folder (report, --resume): they
    check before doing the work, not after."""
    fix = fix or (f"copy it somewhere you can write (cp -r {path} DIR) and use the copy, "
                  "or ask its owner")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such folder; {fix}") from None
    except OSError as e:
        raise ResultsError(f"{path}: not writable by you: {e.strerror or e}; {fix}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ResultsError(f"{path}: not a folder; {fix}")
    if os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        why = "on a read-only file system"
    else:
        why = (f"owned by {_user(st.st_uid)}, mode {stat.S_IMODE(st.st_mode):04o}, "
               f"and you are {_user(os.geteuid())}")
    raise ResultsError(f"{path}: not writable by you: {why}; {fix}")


def _user(uid: int) -> str:
    import pwd
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def samples_path(run_id: int) -> str:
    return os.path.join(SAMPLES_DIR, f"run-{run_id:04d}.parquet")


def run_samples_file(run: dict[str, Any]) -> str:
    """A stored run's samples file, relative to its folder (the runner's
    default name when the manifest names none)."""
    return run.get("samples_file") or samples_path(run["id"])


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
    metric, sample, value = SAMPLE_COLUMNS
    return write_parquet(run_dir, samples_path(run_id), {
        metric: pa.array(np.concatenate(metrics) if metrics else [], pa.string()).dictionary_encode(),
        sample: pa.array(np.concatenate(index) if index else [], pa.int64()),
        value: pa.array(np.concatenate(values) if values else [], pa.float64()),
    })


def write_metrics(run_dir: str, rows: list[tuple[int, str, str, str, float]]) -> None:
    """Rewrite metrics.parquet with every run's probe rows so far."""
    import pyarrow as pa

    run_ids, probes, metrics, keys, values = list(zip(*rows)) if rows else [()] * 5
    run_id, probe, metric, key, value = METRIC_COLUMNS
    write_parquet(run_dir, METRICS, {
        run_id: pa.array(run_ids, pa.int64()),
        probe: pa.array(probes, pa.string()).dictionary_encode(),
        metric: pa.array(metrics, pa.string()).dictionary_encode(),
        key: pa.array(keys, pa.string()),
        value: pa.array([float(v) for v in values], pa.float64()),
    })


def read_metric_rows(run_dir: str) -> list[tuple[int, str, str, str, float]]:
    """metrics.parquet as rows (empty if there is none yet): for resuming."""
    import pyarrow.parquet as pq

    path = os.path.join(run_dir, METRICS)
    if not os.path.exists(path):
        return []
    table = pq.read_table(path).to_pydict()
    return list(zip(*(table[c] for c in METRIC_COLUMNS)))


def write_wakeups(run_dir: str, run_id: int, records: Any) -> str:
    """A run's wake-up records (a NumPy structured array) as Parquet."""
    rel = os.path.join(KERNEL_DIR, f"run-{run_id:04d}-wakeups.parquet")
    return write_parquet(run_dir, rel, {name: records[name] for name in WAKEUP_COLUMNS})


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
        raise ResultsError(f"{arg}: no such results folder; give a folder `lab run` made "
                           f"(under {root}/), or `latest`")
    return arg
