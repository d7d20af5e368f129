"""lab dataset: runs of two hosts gathered into one Parquet dataset, read
back with DuckDB with analysis's medians, gathered again without a
duplicate row, and bad input refused in one line."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from analysis import headline, load_run, user_samples
from analysis.dataset import connect, medians
from lab import cli, dataset, store
from tests.synthetic import HOST_A, HOST_B, HOST_MEDIANS, PROBED_SLOWER, two_hosts

CELL = ["family", "variant", "point", "metric"]


def _gather(capsys, *args) -> tuple[int, str, str]:
    rc = cli.main(["dataset", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _files(out) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), out) for d, _, names in os.walk(out)
                  for n in names)


@pytest.fixture
def hosts(tmp_path):
    return two_hosts(tmp_path)


@pytest.fixture
def gathered(hosts, tmp_path, capsys):
    out = tmp_path / "fleet"
    rc, stdout, err = _gather(capsys, *hosts, "--out", out)
    assert rc == 0, err
    return str(out)


def test_two_hosts_make_two_host_and_kernel_partitions(hosts, gathered):
    for table in dataset.TABLES:
        parts = sorted(os.path.relpath(d, os.path.join(gathered, table))
                       for d, _, names in os.walk(os.path.join(gathered, table)) if names)
        expected = sorted(f"host={dataset.host_id(env)}/kernel={env['kernel.release']}"
                          for env in (HOST_A, HOST_B))
        assert parts == expected, table
    assert dataset.host_id(HOST_A) != dataset.host_id(HOST_B)
    # the kernel is not part of the host's identity; the hardware is
    assert dataset.host_id({**HOST_A, "kernel.release": "7.0"}) == dataset.host_id(HOST_A)
    assert dataset.host_id({**HOST_A, "cpu.online": 8}) != dataset.host_id(HOST_A)
    con = connect(gathered)
    rows = con.execute("SELECT DISTINCT host, kernel, suite_run FROM runs ORDER BY kernel").fetchall()
    assert [r[1] for r in rows] == ["6.1.0-b", "6.18.0-a"]
    releases = dict(con.execute("SELECT kernel, value FROM environment "
                            "WHERE key = 'kernel.release'").fetchall())
    assert releases == {"6.1.0-b": "6.1.0-b", "6.18.0-a": "6.18.0-a"}


def test_files_have_the_declared_schema(gathered):
    declared = dataset.schema()
    for table in dataset.TABLES:
        for rel in _files(os.path.join(gathered, table)):
            assert pq.read_schema(os.path.join(gathered, table, rel)).remove_metadata() \
                == declared[table], (table, rel)
    # the names are the results format's
    assert set(store.SAMPLE_COLUMNS) <= set(declared["samples"].names)
    assert set(store.METRIC_COLUMNS) <= set(declared["metrics"].names)
    assert [("run_id" if f == "id" else f) for f in store.run_fields()] \
        == declared["runs"].names[2:2 + len(store.run_fields())]


def test_duckdb_medians_equal_analysis_medians(hosts, gathered):
    by_run = medians(connect(gathered)).set_index(["suite_run"] + CELL)
    for name, run_dir in zip("ab", hosts):
        run = load_run(run_dir)
        ident = dataset.suite_run_id(run.manifest)
        ours = by_run.loc[ident]["median"]
        theirs = user_samples(run).groupby(CELL, observed=True)["value"].median()
        assert len(ours) == len(theirs) == 5        # null_syscall's one metric, futex's two x2
        for cell, value in theirs.items():
            assert ours.loc[tuple(str(c) for c in cell)] == pytest.approx(value, rel=1e-12)
        # the known medians, and the report's (analysis.headline)
        for (variant, placement), median in HOST_MEDIANS[name].items():
            point = f"placement={placement}" if placement else "-"
            metric = run.headline_metric("baseline", variant)
            assert ours.loc[("baseline", variant, point, metric)] == pytest.approx(median, rel=1e-12)
        table = headline(run, "baseline")
        for row in table.itertuples():
            assert ours.loc[("baseline", row.variant, row.point, row.metric)] \
                == pytest.approx(row.median, rel=1e-12)


def test_user_side_leaves_the_probed_twins_out(gathered):
    con = connect(gathered)
    every = medians(con, user_side=False).set_index(["kernel"] + CELL)["median"]
    # host a: 2 of 3 repetitions at the median, 1 at PROBED_SLOWER times: the
    # median over all runs moves, the user-side one does not
    cell = ("6.18.0-a", "baseline", "null_syscall", "-", "ns_per_op")
    assert 110.0 < every.loc[cell] < 110.0 * PROBED_SLOWER
    probed = con.execute("SELECT count(*) FROM runs WHERE kernel_view AND NOT user_side").fetchone()
    assert probed == (3,)
    assert con.execute("SELECT DISTINCT probe, metric, value FROM metrics").fetchall() \
        == [("x", "switches_per_op", 2.0)]
    # the runs table: params as JSON, counters as a map
    rows = con.execute("SELECT json_extract_string(params, '$.placement'), counters['iterations'] "
                   "FROM runs WHERE variant = 'futex_pingpong' AND repetition = 2 "
                   "ORDER BY kernel, 1").fetchall()
    assert rows == [("cross_cpu", 102.0), ("same_cpu", 102.0)] * 2


def test_gathering_again_does_not_duplicate(hosts, gathered, tmp_path, capsys):
    con = connect(gathered)
    counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone() for t in dataset.TABLES}
    files = _files(gathered)
    # again, the same folder twice, and a copy of it under another name
    copy = shutil.copytree(hosts[0], tmp_path / "copied" / "renamed-run")
    rc, _, err = _gather(capsys, *hosts, hosts[0], copy, "--out", gathered)
    assert rc == 0, err
    assert _files(gathered) == files
    con = connect(gathered)
    assert {t: con.execute(f"SELECT count(*) FROM {t}").fetchone() for t in dataset.TABLES} == counts


def test_a_changed_run_replaces_its_rows(hosts, gathered, capsys):
    before = connect(gathered).execute("SELECT count(*) FROM samples").fetchone()[0]
    path = os.path.join(hosts[1], store.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    manifest["runs"][0]["status"] = store.FAILED        # as if resumed with another outcome
    store.write_manifest(hosts[1], manifest)
    rc, _, err = _gather(capsys, hosts[1], "--out", gathered)
    assert rc == 0, err
    con = connect(gathered)
    assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == before - 100
    assert con.execute("SELECT status FROM runs WHERE run_id = 1 AND kernel = '6.1.0-b'").fetchall() \
        == [("failed",)]


def test_an_interrupted_gather_leaves_the_dataset_as_it_was(hosts, gathered, tmp_path,
                                                            monkeypatch, capsys):
    files = _files(gathered)
    real = pq.write_table
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", interrupted)
    fresh = tmp_path / "fresh"
    for out in (gathered, fresh):
        calls.clear()
        rc, _, err = _gather(capsys, *hosts, "--out", out)
        assert rc == cli.EXIT_INTERRUPTED
    assert _files(gathered) == files
    assert not fresh.exists()


def _set_version(run_dir):
    path = os.path.join(run_dir, store.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    manifest["format_version"] = 99
    with open(path, "w") as f:
        json.dump(manifest, f)


def _no_ok_run(run_dir):
    manifest = store.read_manifest(run_dir)
    for run in manifest["runs"]:
        run["status"] = store.PENDING
    store.write_manifest(run_dir, manifest)


@pytest.mark.parametrize("case, expected", [
    ("not_results", "not a results folder"),
    ("missing", "no such results folder"),
    ("version", "results format version 99 is not supported"),
    ("no_ok_run", "no finished run to gather"),
    ("out_not_dataset", "a folder that is not a lab dataset"),
    ("out_a_file", "not a folder"),
])
def test_bad_input_is_one_line_and_exit_2(case, expected, hosts, tmp_path, capsys):
    a, b = hosts
    out = tmp_path / "fleet"
    if case == "not_results":
        a = tmp_path / "empty"
        a.mkdir()
    elif case == "missing":
        a = tmp_path / "nowhere"
    elif case == "version":
        _set_version(a)
    elif case == "no_ok_run":
        _no_ok_run(a)
    elif case == "out_not_dataset":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "out_a_file":
        out.write_text("mine")
    before = _files(tmp_path)
    rc, stdout, err = _gather(capsys, a, b, "--out", out)
    assert rc == cli.EXIT_BAD_INPUT
    assert err.count("\n") == 1 and expected in err and err.startswith("lab: error: dataset: ")
    assert _files(tmp_path) == before      # nothing written, not even an empty --out


def test_a_run_still_being_written_is_refused(hosts, tmp_path, capsys):
    from lab import lock
    a, b = hosts
    manifest = store.read_manifest(a)
    manifest["status"] = "running"
    store.write_manifest(a, manifest)
    held = lock.folder(a)
    try:
        rc, _, err = _gather(capsys, a, b, "--out", tmp_path / "fleet")
    finally:
        held.close()
    assert rc == cli.EXIT_BAD_INPUT and err.count("\n") == 1 and "still being written" in err
    assert not (tmp_path / "fleet").exists()
    # a running status with no runner behind it (a crash): its ok runs are gathered
    rc, _, err = _gather(capsys, a, b, "--out", tmp_path / "fleet")
    assert rc == 0, err


def test_connect_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(dataset.DatasetError, match="not a lab dataset"):
        connect(str(tmp_path))
