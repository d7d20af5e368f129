"""Suite validation: bad input gets one line naming the file, the key and
what is allowed; `lab run` exits 2 and writes nothing."""

import glob
import os
import signal
import subprocess
import sys

import pytest

from lab import suite as suite_mod
from lab.runner import check_cpus, plan
from lab.suite import SuiteError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, "experiments", "*.toml")))
USABLE = sorted(os.sched_getaffinity(0))
two_usable_cpus = pytest.mark.skipif(len(USABLE) < 2, reason="needs two usable CPUs")

ALL_CAPS = {"native": None, "io_uring": None, "two_cpus": None, "fibers": None, "root": None}


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("body, key, allowed", [
    ("[nosuch]\nx = 1\n", "[nosuch]", "known: baseline"),
    ("[baseline]\nvariants = ['warp_drive']\n", "baseline.variants", "allowed: clock_read"),
    ("[baseline]\nsampels = 10\n", "baseline.sampels", "allowed: variants, samples"),
    ("[baseline]\nsamples = 'many'\n", "baseline.samples", "expected an integer"),
    ("[baseline]\nsamples = 5\n", "baseline.samples", "out of range 10..10000000"),
    ("[baseline]\nsamples = true\n", "baseline.samples", "expected an integer"),
    ("[baseline]\nplacement = 'far'\n", "baseline.placement", "same_cpu, cross_cpu"),
    ("[baseline]\nbatch = [1, 5000]\n", "baseline.batch", "out of range 1..4096"),
    ("[baseline]\nbatch = []\n", "baseline.batch", "empty list"),
    ("[baseline]\nbatch = [4, 4]\n", "baseline.batch", "listed twice"),
    ("[suite]\nrepetitions = 0\n[baseline]\n", "suite.repetitions", "out of range 1..1000"),
    ("[suite]\ntimeout = 'long'\n[baseline]\n", "suite.timeout", "expected a number"),
    ("[suite]\nrepeat = 3\n[baseline]\n", "suite.repeat", "unknown setting"),
    ("[suite]\nname = 'a/b'\n[baseline]\n", "suite.name", "cannot name a results folder"),
    ("[suite]\n", "no family tables", "[baseline]"),
    ("[baseline\n", "not valid TOML", ""),
    # issue 11, item 9: a 400-digit integer for a float parameter
    ("[syncfirst]\nhit_ratio = 1" + "0" * 400 + "\n", "syncfirst.hit_ratio",
     "expected a finite number"),
    # an integer too long for Python to read at all (tomllib's ValueError)
    ("[baseline]\nbatch = " + "1" * 5000 + "\n", "not valid TOML", "5000 digits"),
    # arrays nested 3000 deep (tomllib's RecursionError)
    ("[baseline]\nbatch = " + "[" * 3000 + "]" * 3000 + "\n", "not valid TOML",
     "nested too deeply"),
    ("[baseline]\nbatch = " + "{a = " * 1000 + "1" + "}" * 1000 + "\n", "not valid TOML",
     "nested too deeply"),
    # a suite.name too long for a results folder (ENAMETOOLONG after --out was made)
    ("[suite]\nname = '" + "n" * 300 + "'\n[baseline]\n", "suite.name",
     "300 bytes in UTF-8, at most 100"),
    ("[suite]\nname = '" + "\u00e9" * 60 + "'\n[baseline]\n", "suite.name",
     "120 bytes in UTF-8, at most 100"),
    # item 12: control characters in suite.name, raw in the terminal and the folder name
    ('[suite]\nname = "a\\nb"\n[baseline]\n', "suite.name", "'a\\nb' cannot name"),
    ('[suite]\nname = "\\u001b[31mred"\n[baseline]\n', "suite.name", "cannot name"),
    ('[suite]\nname = "evil\\u202etxt"\n[baseline]\n', "suite.name", "cannot name"),
    ('[suite]\nname = ".."\n[baseline]\n', "suite.name", "cannot name"),
    ('[suite]\ndescription = "ok\\u001b[2Jgone"\n[baseline]\n', "suite.description",
     "control character"),
    # ... and in a key, which an error message repeats
    ('[baseline]\n"a\\u001b[31m\\nb" = 1\n', "baseline.a\\x1b[31m\\nb",
     "unknown parameter"),
    ('[suite]\n"x\\ry" = 1\n[baseline]\n', "suite.x\\ry", "unknown setting"),
    # item 8: a sweep over the limit on planned runs, with the count and how to raise it
    ("[suite]\nrepetitions = 50\n[baseline]\nvariants = ['uring_nop_batched']\n"
     "batch = [" + ", ".join(map(str, range(1, 1001))) + "]\n", "suite.max_runs",
     "plans 50,000 runs (points x repetitions), over the limit of 20,000: sweep fewer values "
     "or raise [suite] max_runs (at most 100,000)"),
    ("[suite]\nrepetitions = 1000\n[baseline]\nvariants = ['uring_nop_batched']\n"
     "batch = [" + ", ".join(map(str, range(1, 1001))) + "]\n", "suite.max_runs",
     "plans 1,000,000 runs (points x repetitions), over the limit of 20,000: sweep fewer "
     "values or split the suite (max_runs is at most 100,000)"),
    ("[suite]\nmax_runs = 1000000\n[baseline]\n", "suite.max_runs", "out of range 1..100000"),
])
def test_bad_suite_names_file_key_and_allowed(tmp_path, body, key, allowed):
    path = write(tmp_path, body)
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    msg = str(err.value)
    assert msg.startswith(path + ": ")
    assert key in msg and allowed in msg
    assert msg.isprintable()        # one line, no raw escape sequence


def test_missing_file(tmp_path):
    with pytest.raises(SuiteError, match="cannot read suite"):
        suite_mod.load(str(tmp_path / "absent.toml"))


@pytest.fixture
def alarm():
    """Fail, not hang, if a load blocks (a FIFO waits for a writer)."""
    def expired(signum, frame):
        raise AssertionError("load blocked")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_suite_must_be_a_regular_file(tmp_path, alarm):
    """Issue 11, item 9: `lab run /dev/zero` grew until MemoryError; a FIFO
    blocked forever."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo), str(tmp_path)):
        with pytest.raises(SuiteError) as err:
            suite_mod.load(path)
        assert str(err.value).startswith(f"{path}: not a regular file"), str(err.value)


def test_suite_file_size_is_capped(tmp_path):
    body = "[baseline]\n" + ("# padding" * 100 + "\n") * 1200     # just over 1 MiB
    assert len(body) > suite_mod.MAX_SUITE_BYTES
    with pytest.raises(SuiteError, match=r"larger than 1 MiB"):
        suite_mod.load(write(tmp_path, body))


def test_sweep_is_counted_before_anything_is_expanded(tmp_path, monkeypatch):
    """Issue 11, item 8: 10^6 planned runs took a minute and 5.6 GB, 9e9
    ended in MemoryError.  The count is arithmetic: no point is built."""
    def expanded(self, variant):
        raise AssertionError("points expanded before the count")
    monkeypatch.setattr(suite_mod.FamilySelection, "points", expanded)
    def values(lo, n):
        return "[" + ", ".join(map(str, range(lo, lo + n))) + "]"
    path = write(tmp_path, "[suite]\nrepetitions = 1000\nprobe_overhead = true\n"
                           "[baseline]\nvariants = ['uring_nop_batched']\n"
                           f"batch = {values(1, 4096)}\nsamples = {values(10, 1000)}\n"
                           f"warmup = {values(0, 1000)}\n")
    with pytest.raises(SuiteError) as err:
        suite_mod.load(path)
    assert "plans 8,192,000,000,000 runs (points x repetitions x 2 for probe_overhead)" \
        in str(err.value)


def test_max_runs_can_be_raised(tmp_path):
    sweep = ("[baseline]\nvariants = ['uring_nop_batched']\nbatch = ["
             + ", ".join(map(str, range(1, 1001))) + "]\n")
    with pytest.raises(SuiteError, match="25,000 runs"):
        suite_mod.load(write(tmp_path, "[suite]\nrepetitions = 25\n" + sweep))
    s = suite_mod.load(write(tmp_path, "[suite]\nrepetitions = 25\nmax_runs = 25000\n" + sweep))
    assert s.planned_runs() == 25000
    assert len(plan(s, ALL_CAPS)[0]) == 25000


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_experiments_stay_under_the_default_limit(path):
    s = suite_mod.load(path)
    default = next(s.default for s in suite_mod.SUITE_SETTINGS if s.name == "max_runs")
    assert s.planned_runs() <= default
    # the count bounds what the runner plans, probes and twins included
    runs, skipped = plan(s, ALL_CAPS, kernel_view=True)
    assert len(runs) <= s.planned_runs()
    print(f"{os.path.basename(path)}: {s.planned_runs()} counted, {len(runs)} planned")


def _cpu_suite(tmp_path, settings, table):
    s = suite_mod.load(write(tmp_path, "[suite]\n" + settings + "\n" + table))
    runs, _ = plan(s, ALL_CAPS)
    assert runs
    return s, runs


NOT_USABLE = max(USABLE) + 1


@two_usable_cpus
@pytest.mark.parametrize("table, why", [
    # syncfirst's SQPOLL pins its SQ thread on peer_cpu, whatever the placement
    ("[syncfirst]\nvariants = ['uring_sqpoll']\n", "syncfirst/uring_sqpoll"),
    # the receives' producer is always on peer_cpu
    ("[syncfirst]\nvariants = ['recv_sync']\n", "syncfirst/recv_sync"),
    # VP 1 of the activations runtime
    ("[activations]\nvariants = ['none']\nvps = 2\n", "activations/none"),
    ("[baseline]\nvariants = ['futex_pingpong']\nplacement = 'cross_cpu'\n",
     "baseline/futex_pingpong"),
])
def test_peer_cpu_checked_for_every_run_that_uses_it(tmp_path, table, why):
    """Issue 11, item 10: peer_cpu was checked for cross_cpu points only;
    uring_sqpoll and recv_* used it anyway and failed with EINVAL."""
    s, runs = _cpu_suite(tmp_path, f"peer_cpu = {NOT_USABLE}", table)
    with pytest.raises(SuiteError) as err:
        check_cpus(s, runs)
    msg = str(err.value)
    assert msg.startswith(f"{s.path}: suite.peer_cpu: CPU {NOT_USABLE} is not usable here "
                          f"(usable: {','.join(map(str, USABLE))})"), msg
    assert why in msg and msg.isprintable()


@two_usable_cpus
@pytest.mark.parametrize("table", [
    "[syncfirst]\nvariants = ['recv_sync', 'recv_uring']\n",
    "[syncfirst]\nvariants = ['pool']\nplacement = 'cross_cpu'\n",
    "[msgport]\nvariants = ['ppc_futex']\nplacement = 'cross_cpu'\n",
])
def test_peer_cpu_must_differ_where_a_second_cpu_is_needed(tmp_path, table):
    s, runs = _cpu_suite(tmp_path, "cpu = 0\npeer_cpu = 0", table)
    with pytest.raises(SuiteError, match=r"suite\.peer_cpu: must differ from suite\.cpu \(0\)"):
        check_cpus(s, runs)


@two_usable_cpus
@pytest.mark.parametrize("settings, table", [
    # no run of these uses peer_cpu: whatever it says does not matter
    (f"peer_cpu = {NOT_USABLE}", "[baseline]\nplacement = 'same_cpu'\n"),
    (f"peer_cpu = {NOT_USABLE}", "[activations]\nvariants = ['none', 't4_fibers']\nvps = 1\n"),
    (f"peer_cpu = {NOT_USABLE}", "[syncfirst]\nvariants = ['sync', 'pool', 'uring']\n"),
    # SQPOLL and the runtime's VPs share the worker's CPU when told to
    ("cpu = 0\npeer_cpu = 0", "[syncfirst]\nvariants = ['uring_sqpoll']\n"),
    ("cpu = 0\npeer_cpu = 0", "[activations]\nvariants = ['none']\nvps = 2\n"),
])
def test_peer_cpu_not_checked_where_unused(tmp_path, settings, table):
    check_cpus(*_cpu_suite(tmp_path, settings, table))


def test_points_sweep_only_the_params_a_variant_reads(tmp_path):
    s = suite_mod.load(write(tmp_path, "[baseline]\nbatch = [1, 8]\n"
                                       "placement = ['same_cpu', 'cross_cpu']\n"))
    (sel,) = s.families["baseline"]
    fam = sel.family
    assert len(sel.points(fam.variant("null_syscall"))) == 1
    assert [p["batch"] for p in sel.points(fam.variant("uring_nop_batched"))] == [1, 8]
    assert [p["placement"] for p in sel.points(fam.variant("futex_pingpong"))] == \
        ["same_cpu", "cross_cpu"]
    # defaults fill what the suite leaves out
    assert sel.points(fam.variant("null_syscall"))[0]["samples"] == fam.param("samples").default


def test_plan_interleaves_and_rotates(tmp_path):
    s = suite_mod.load(write(tmp_path, "[suite]\nrepetitions = 3\n"
                                       "[baseline]\nvariants = "
                                       "['clock_read', 'null_syscall', 'swapcontext']\n"))
    runs, skipped = plan(s, ALL_CAPS)
    assert not skipped
    order = [r.variant for r in runs]
    # never all of A then all of B: each repetition visits every variant once
    for rep in range(3):
        assert sorted(order[rep * 3:rep * 3 + 3]) == ["clock_read", "null_syscall", "swapcontext"]
    # and the starting variant rotates
    assert len({order[0], order[3], order[6]}) == 3
    assert [r.id for r in runs] == list(range(1, 10))


def test_plan_skips_missing_capabilities_with_reason(tmp_path):
    s = suite_mod.load(write(tmp_path, "[baseline]\nplacement = ['same_cpu', 'cross_cpu']\n"))
    caps = dict(ALL_CAPS, io_uring="EPERM: io_uring_disabled=2", two_cpus="only 1 CPU usable")
    runs, skipped = plan(s, caps)
    skipped_names = {(x["variant"], x["params"].get("placement")) for x in skipped}
    assert ("uring_nop", None) in skipped_names and ("uring_nop_batched", None) in skipped_names
    assert ("futex_pingpong", "cross_cpu") in skipped_names
    assert all("io_uring: EPERM" in x["reason"] or "two_cpus" in x["reason"] for x in skipped)
    assert not any(r.variant.startswith("uring") for r in runs)
    assert {r.params.get("placement") for r in runs if r.variant == "futex_pingpong"} == {"same_cpu"}


@pytest.mark.parametrize("body", [
    "[baseline]\nsamples = 0\n",
    "[suite]\ncpu = 4000\n[baseline]\nvariants = ['null_syscall']\n",
    pytest.param("[suite]\npeer_cpu = 0\n[baseline]\nvariants = ['futex_pingpong']\n"
                 "placement = 'cross_cpu'\n", marks=two_usable_cpus),
    # issue 11: each of these used to end in a traceback, or ran and failed every run
    "[syncfirst]\nhit_ratio = 1" + "0" * 400 + "\n",
    "[baseline]\nbatch = " + "[" * 3000 + "]" * 3000 + "\n",
    "[suite]\nname = '" + "n" * 300 + "'\n[baseline]\nvariants = ['null_syscall']\n",
    '[suite]\nname = "two\\nlines\\u001b[31m"\n[baseline]\nvariants = ["null_syscall"]\n',
    "[suite]\nrepetitions = 1000\n[baseline]\nbatch = ["
    + ", ".join(map(str, range(1, 1001))) + "]\n",
    pytest.param(f"[suite]\npeer_cpu = {NOT_USABLE}\n[syncfirst]\nvariants = ['uring_sqpoll']\n",
                 marks=two_usable_cpus),
    pytest.param("[suite]\ncpu = 0\npeer_cpu = 0\n[syncfirst]\nvariants = ['recv_sync']\n",
                 marks=two_usable_cpus),
    "/dev/zero",
    "FIFO",
])
def test_lab_run_bad_input_exits_2_and_writes_nothing(tmp_path, body):
    if body == "/dev/zero":
        path = body
    elif body == "FIFO":
        path = str(tmp_path / "fifo.toml")
        os.mkfifo(path)
    else:
        path = write(tmp_path, body)
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", path, "--out", str(out)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lab: error: " + path), proc.stderr[-2000:]
    assert lines[0].isprintable()
    assert not out.exists()


def test_array_of_tables_sweeps_each_product_once(tmp_path):
    s = suite_mod.load(write(tmp_path, "[suite]\nrepetitions = 1\n"
                                       "[[baseline]]\nvariants = ['uring_nop_batched']\n"
                                       "batch = [1, 8]\n"
                                       "[[baseline]]\nvariants = ['uring_nop_batched', 'null_syscall']\n"
                                       "batch = [8, 64]\n"))
    runs, skipped = plan(s, ALL_CAPS)
    points = [(r.variant, r.params.get("batch")) for r in runs]
    # batch 8 is in both tables: it runs once
    assert sorted(points) == [("null_syscall", None), ("uring_nop_batched", 1),
                              ("uring_nop_batched", 8), ("uring_nop_batched", 64)]


def test_array_of_tables_errors_name_the_table(tmp_path):
    path = write(tmp_path, "[[baseline]]\nsamples = 100\n[[baseline]]\nsamples = 1\n")
    with pytest.raises(SuiteError, match=r"baseline\[1\]\.samples: 1 is out of range"):
        suite_mod.load(path)
