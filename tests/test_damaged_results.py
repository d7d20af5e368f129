"""Damaged results folders: `lab show`, `lab report` and `lab run --resume`
answer bad input of any kind with one line and exit status 2
(``lab: error: <path>: <what is wrong>; <how to fix>``), no traceback, and
write nothing into the folder.

Each damage is done to a private copy of a real tiny run (conftest's
``run_copy``): the manifest as bytes (not UTF-8, cut short), the manifest as
JSON (a field missing, of the wrong type, a file named outside the folder),
or a samples file (NaN, gone, not Parquet).  ``--resume`` must refuse a
damaged manifest before anything runs: these tests take seconds, not a
suite's worth of runs."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from lab import store

from .conftest import REPO
from .helpers import LAB, run_lab

NOBODY = 65534

# -- damages ----------------------------------------------------------------------


def _edit_bytes(change):
    def damage(run_dir: str) -> None:
        path = os.path.join(run_dir, store.MANIFEST)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(change(data))
    return damage


def _edit_json(change):
    def damage(run_dir: str) -> None:
        path = os.path.join(run_dir, store.MANIFEST)
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        change(manifest)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
    return damage


def _first_ok(run_dir: str) -> dict:
    with open(os.path.join(run_dir, store.MANIFEST), encoding="utf-8") as f:
        return next(r for r in json.load(f)["runs"] if r["status"] == store.OK)


def _samples_of_first_ok(run_dir: str) -> str:
    return os.path.join(run_dir, _first_ok(run_dir)["samples_file"])


def _non_finite(value: float):
    def damage(run_dir: str) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.parquet as pq
        path = _samples_of_first_ok(run_dir)
        table = pq.read_table(path)
        values = table.column("value").to_numpy().copy()
        values[len(values) // 2] = value
        index = table.schema.get_field_index("value")
        table = table.set_column(index, "value", pa.array(values.astype(np.float64)))
        pq.write_table(table, path)
    return damage


def _remove_samples(run_dir: str) -> None:
    os.unlink(_samples_of_first_ok(run_dir))


def _garble_samples(run_dir: str) -> None:
    with open(_samples_of_first_ok(run_dir), "wb") as f:
        f.write(b"these bytes are not a Parquet file\n" * 20)


def _symlink_samples_out(run_dir: str) -> None:
    path = _samples_of_first_ok(run_dir)
    os.unlink(path)
    os.symlink("/etc/passwd", path)


def _set_run0(**values):
    return _edit_json(lambda m: m["runs"][0].update(values))


def _del_run0(key: str):
    return _edit_json(lambda m: m["runs"][0].pop(key))


def _duplicate_id(m: dict) -> None:
    m["runs"][1]["id"] = m["runs"][0]["id"]


def _runs_as_dict(m: dict) -> None:
    m["runs"] = {str(r["id"]): r for r in m["runs"]}


MANIFEST_ONLY = ("show", "report", "resume")
SAMPLES = ("show", "report")        # --resume never reads the ok runs' samples

# name -> (damage, commands it applies to, words the error line must hold)
DAMAGES = {
    "not_utf8": (_edit_bytes(lambda d: d.replace(b'"tiny"', b'"tiny\xff\xfe"', 1)),
                 MANIFEST_ONLY, ("UTF-8",)),
    "truncated_json": (_edit_bytes(lambda d: d[:len(d) // 2]), MANIFEST_ONLY, ("JSON",)),
    "run_without_family": (_del_run0("family"), MANIFEST_ONLY, ("runs[0]", "family")),
    "run_without_cpu": (_del_run0("cpu"), MANIFEST_ONLY, ("runs[0]", "cpu")),
    "run_with_unknown_key": (_set_run0(colour="blue"), MANIFEST_ONLY, ("runs[0]", "colour")),
    "no_families": (_edit_json(lambda m: m.pop("families")), MANIFEST_ONLY, ("families",)),
    "family_not_described": (_set_run0(family="nosuch"), MANIFEST_ONLY,
                             ("runs[0].family", "nosuch")),
    "runs_not_a_list": (_edit_json(_runs_as_dict), MANIFEST_ONLY, ("runs",)),
    "id_not_an_integer": (_set_run0(id="x"), MANIFEST_ONLY, ("runs[0].id",)),
    "duplicate_id": (_edit_json(_duplicate_id), MANIFEST_ONLY, ("runs[1].id",)),
    "unknown_status": (_set_run0(status="finished"), MANIFEST_ONLY,
                       ("runs[0].status", "finished")),
    "params_not_an_object": (_set_run0(params=[1, 2]), MANIFEST_ONLY, ("runs[0].params",)),
    "suite_without_settings": (_edit_json(lambda m: m["suite"].pop("settings")),
                               MANIFEST_ONLY, ("suite", "settings")),
    "samples_file_climbs_out": (_set_run0(samples_file="../../etc/passwd"), MANIFEST_ONLY,
                                ("runs[0].samples_file", "..")),
    "samples_file_absolute": (_set_run0(samples_file="/etc/passwd"), MANIFEST_ONLY,
                              ("runs[0].samples_file", "absolute")),
    "kernel_file_climbs_out": (_set_run0(kernel_file="../../etc/passwd"), MANIFEST_ONLY,
                               ("runs[0].kernel_file", "..")),
    "samples_symlink_out": (_symlink_samples_out, MANIFEST_ONLY, ("samples_file", "/etc/passwd")),
    "samples_nan": (_non_finite(math.nan), SAMPLES, ("NaN",)),
    "samples_inf": (_non_finite(math.inf), SAMPLES, ("inf",)),
    "samples_missing": (_remove_samples, SAMPLES, ("missing",)),
    "samples_not_parquet": (_garble_samples, SAMPLES, ("Parquet",)),
}

CASES = [pytest.param(name, command, id=f"{name}-{command}")
         for name, (_, commands, _) in DAMAGES.items() for command in commands]


# -- checks -----------------------------------------------------------------------


def _tree(run_dir: str) -> dict[str, tuple]:
    """Every entry under run_dir with its size and mtime (folders' mtimes
    change when anything is created in them, even a temporary file)."""
    out = {".": (0, os.stat(run_dir).st_mtime_ns)}
    for root, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            out[os.path.relpath(path, run_dir)] = (st.st_size, st.st_mtime_ns)
    return out


def _command(command: str, run_dir: str) -> list[str]:
    return {"show": ["show", run_dir],
            "report": ["report", run_dir],
            "resume": ["run", "--resume", run_dir, "--quiet"]}[command]


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Exit status 2 and exactly one line on stderr, `lab: error: PATH: what;
    how to fix`, holding every one of words."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    (line,) = lines
    assert line.startswith("lab: error: /"), line
    assert "; " in line, f"no way to fix it given: {line}"
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    assert proc.stdout == "", proc.stdout
    return line


@pytest.mark.parametrize("name, command", CASES)
def test_damaged_folder_gives_one_line(run_copy, name, command):
    damage, _, words = DAMAGES[name]
    run_dir = run_copy()
    damage(run_dir)
    before = _tree(run_dir)
    proc = run_lab(_command(command, run_dir), timeout=120, cwd=REPO)
    assert_one_line_error(proc, *words)
    assert _tree(run_dir) == before, "the damaged folder was written to"


def test_manifest_error_names_its_path_and_the_fix(run_copy):
    run_dir = run_copy()
    _set_run0(samples_file="../../etc/passwd")(run_dir)
    with pytest.raises(store.ResultsError) as err:
        store.read_manifest(run_dir)
    message = str(err.value)
    assert message.startswith(os.path.join(run_dir, store.MANIFEST) + ": ")
    assert os.path.join(run_dir, store.SUITE_COPY) in message      # run the suite again


def test_undamaged_copy_still_reads(run_copy):
    """The validation accepts what the runner writes."""
    from analysis import load_run
    run = load_run(run_copy())
    assert len(run.runs) and len(run.samples)


def test_manifest_without_what_older_runs_lacked_still_reads(run_copy):
    """Fields with defaults may be absent (runs stored before the kernel
    view existed had no kernel_view, counters or kernel_file)."""
    from analysis import load_run

    def strip(m: dict) -> None:
        m.pop("kernel_view")
        for r in m["runs"]:
            for key in ("kernel_view", "counters", "kernel_file", "alongside"):
                r.pop(key, None)
    run_dir = run_copy()
    _edit_json(strip)(run_dir)
    run = load_run(run_dir)
    assert not run.runs["kernel_view"].any() and len(run.samples)


def test_run_fields_are_plannedrun_fields():
    """The store checks a run against lab.runner.PlannedRun, the one
    declaration of a run's fields: what --resume rebuilds."""
    import dataclasses

    from lab.runner import PlannedRun
    fields = {f.name for f in dataclasses.fields(PlannedRun)}
    assert set(store.run_fields()) == fields


# -- a folder the user cannot write -------------------------------------------------


@pytest.fixture
def read_only_copy(run_copy):
    """A copy of the tiny run that another user may read but not write:
    in a folder of its own under /tmp (pytest's tmp_path is private to
    root), every folder 0555, every file 0444."""
    base = tempfile.mkdtemp(prefix="lab-read-only-")
    os.chmod(base, 0o755)
    run_dir = os.path.join(base, "run")
    shutil.copytree(run_copy(), run_dir)
    for root, dirs, files in os.walk(run_dir, topdown=False):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        os.chmod(root, 0o555)
    yield run_dir
    for root, dirs, files in os.walk(run_dir):
        os.chmod(root, 0o755)
    shutil.rmtree(base)


def run_lab_as_other_user(args, **kw) -> subprocess.CompletedProcess:
    """`lab ARGS` as a user who owns none of the files: nobody when we are
    root (root may write anywhere), ourselves otherwise."""
    prefix = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is not installed")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = dict(os.environ, HOME="/nonexistent", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(prefix + LAB + list(args), capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env, **kw)


def _check_other_user_can_read(run_dir: str) -> None:
    proc = run_lab_as_other_user(["--version"])
    if proc.returncode != 0:
        pytest.skip(f"the lab cannot run as another user here: {proc.stderr.strip()}")
    assert not os.access(run_dir, os.W_OK) or os.geteuid() == 0


def test_show_works_on_a_read_only_folder(read_only_copy):
    _check_other_user_can_read(read_only_copy)
    before = _tree(read_only_copy)
    proc = run_lab_as_other_user(["show", read_only_copy])
    assert proc.returncode == 0, proc.stderr
    assert "[baseline]" in proc.stdout and "Traceback" not in proc.stderr
    assert _tree(read_only_copy) == before


def test_show_on_samples_the_user_cannot_read(read_only_copy):
    _check_other_user_can_read(read_only_copy)
    os.chmod(_samples_of_first_ok(read_only_copy), 0)
    proc = run_lab_as_other_user(["show", read_only_copy])
    assert_one_line_error(proc, "not readable by you", "run 1")


def test_report_refuses_a_read_only_folder_first(read_only_copy):
    _check_other_user_can_read(read_only_copy)
    before = _tree(read_only_copy)
    proc = run_lab_as_other_user(["report", read_only_copy])
    line = assert_one_line_error(proc, "not writable by you", "-o PATH")
    assert line.startswith(f"lab: error: {read_only_copy}: ")
    assert _tree(read_only_copy) == before


@pytest.mark.parametrize("output, words", [
    ("no/such/r.pdf", ("no/such: no such folder", "-o PATH")),
    (".", ("a folder, not a PDF file", "NAME.pdf")),
], ids=["folder-missing", "output-a-folder"])
def test_report_refuses_a_bad_output_first(run_copy, tmp_path, output, words):
    run_dir = run_copy()
    before = _tree(run_dir)
    proc = run_lab(["report", run_dir, "-o", str(tmp_path / output)], timeout=120, cwd=REPO)
    assert_one_line_error(proc, *words)
    assert _tree(run_dir) == before


def test_resume_refuses_a_read_only_folder_first(read_only_copy):
    _check_other_user_can_read(read_only_copy)
    before = _tree(read_only_copy)
    proc = run_lab_as_other_user(["run", "--resume", read_only_copy, "--quiet"])
    assert_one_line_error(proc, "not writable by you")
    assert _tree(read_only_copy) == before


def test_require_writable(tmp_path):
    store.require_writable(str(tmp_path))       # nothing to say
    with pytest.raises(store.ResultsError, match="no such folder"):
        store.require_writable(str(tmp_path / "nope"))
    (tmp_path / "f").write_text("")
    with pytest.raises(store.ResultsError, match="not a folder"):
        store.require_writable(str(tmp_path / "f"))
    with pytest.raises(store.ResultsError, match="; use -o PATH$"):
        store.require_writable(str(tmp_path / "nope"), fix="use -o PATH")
    if os.geteuid() != 0:       # root may write a 0555 folder
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        with pytest.raises(store.ResultsError, match="not writable by you"):
            store.require_writable(str(ro))

