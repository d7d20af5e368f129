"""The `chains` family: syslet chains (seed 003) as linked io_uring SQEs.

Mechanics first, through lab._native with no runner: what a failed atom
does to the rest of a chain (IOSQE_IO_LINK cancels it, IOSQE_IO_HARDLINK
runs it, the system call and one-enter-per-atom variants stop: syslets'
SYSLET_STOP_ON_NEGATIVE), that open_read_close really reads the file
through a direct descriptor, that every variant and op measures something.
Then, as root, the kernel's count: k linked NOPs cost one system call per
chain, k separate submissions or k system calls cost k.  Bad combinations
fail with one line naming the parameters.
"""

import errno
import os

import numpy as np
import pytest

from lab import store
from lab.families import chains
from lab.model import RunContext
from lab.native import load, standalone_handshake

from .helpers import require_probes, run_dir_of, run_lab

ffi, lib = load()
VARIANTS = [v.name for v in chains.FAMILY.variants]
URING = [v for v in VARIANTS if v != "syscalls"]
NOT_RUN = lib.CHAINS_NOT_RUN
CPU = min(os.sched_getaffinity(0))
EBADF, ENOENT, ECANCELED = -errno.EBADF, -errno.ENOENT, -errno.ECANCELED
# what a successful atom returns, per op: (first atom, middle atoms, last atom)
OK = {"nop": (0, 0, 0), "read": (4096, 4096, 4096), "open_read_close": (0, 4096, 0)}


def params(**kw):
    p = {x.name: x.default for x in chains.PARAMS}
    p.update(samples=40, warmup=5)
    p.update(kw)
    return p


def chain(variant, tmp_path, **kw):
    """(samples, last chain's per-atom results, counts) of one run."""
    return chains.run_chain(variant, params(**kw), CPU, str(tmp_path))


def ok_results(op, k):
    first, middle, last = OK[op]
    return [first] + [middle] * (k - 2) + [last] if k > 1 else [first]


# ---- what a failure does to the rest of the chain ----------------------------

@pytest.mark.parametrize("op", chains.OPS)
@pytest.mark.parametrize("variant", ["uring_link", "uring_link_wait1"])
def test_failed_link_cancels_the_rest(tmp_path, variant, op):
    _, res, c = chain(variant, tmp_path, op=op, k=5, fail_at=2)
    assert res[0] == OK[op][0]
    assert res[1] == EBADF
    assert res[2:] == [ECANCELED] * 3
    n = c["chains"]
    assert (c["completions"], c["canceled"], c["failed"], c["not_run"]) == (5 * n, 3 * n, n, 0)


@pytest.mark.parametrize("op", chains.OPS)
def test_hardlink_runs_the_rest(tmp_path, op):
    _, res, c = chain("uring_hardlink", tmp_path, op=op, k=5, fail_at=2)
    expected = ok_results(op, 5)
    expected[1] = EBADF
    assert res == expected
    n = c["chains"]
    assert (c["completions"], c["ok"], c["canceled"], c["failed"]) == (5 * n, 4 * n, 0, n)


@pytest.mark.parametrize("op", chains.OPS)
@pytest.mark.parametrize("variant", ["syscalls", "uring_separate"])
def test_one_call_per_atom_stops_after_the_failure(tmp_path, variant, op):
    _, res, c = chain(variant, tmp_path, op=op, k=5, fail_at=2)
    assert res[0] >= 0 and res[1] == EBADF
    assert res[2:] == [NOT_RUN] * 3
    n = c["chains"]
    assert (c["completions"], c["not_run"], c["canceled"]) == (2 * n, 3 * n, 0)
    assert c["kernel_entries"] == 2 * n


def test_failed_openat_starves_a_hardlinked_chain(tmp_path):
    # the open fails, so the slot stays empty: the reads and the close that
    # a hardlink still runs find nothing there
    _, res, _ = chain("uring_hardlink", tmp_path, op="open_read_close", k=4, fail_at=1)
    assert res == [ENOENT, EBADF, EBADF, EBADF]
    _, res, _ = chain("uring_link", tmp_path, op="open_read_close", k=4, fail_at=1)
    assert res == [ENOENT] + [ECANCELED] * 3


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_failed_close_is_cleaned_up_between_chains(tmp_path, variant):
    # every chain leaves the file open (its close fails); the worker closes
    # it outside the timed interval, so the next chain's open works again
    _, res, c = chain(variant, tmp_path, op="open_read_close", k=4, fail_at=4)
    assert res[:3] == [res[0], 4096, 4096] and res[0] >= 0 and res[3] == EBADF
    n = c["chains"]
    assert c["ok"] == 3 * n and c["untimed_syscalls"] == n


# ---- every variant measures, and does the work -------------------------------

# op=nop has no file to evict
@pytest.mark.parametrize("op, cached", [("nop", True), ("read", True), ("read", False),
                                        ("open_read_close", True), ("open_read_close", False)])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_and_op_returns_plausible_samples(tmp_path, variant, op, cached):
    k = 6
    samples, res, c = chain(variant, tmp_path, op=op, k=k, cached=cached)
    assert samples.size == 40 and np.all(np.isfinite(samples)) and np.all(samples > 0)
    assert np.median(samples) < 1e9
    n = c["chains"]
    assert n == 40
    assert c["ok"] == c["completions"] == k * n
    assert c["failed"] == c["canceled"] == c["not_run"] == c["blocks_corrupt"] == 0
    assert c["untimed_syscalls"] == (0 if cached else n)
    entries = c["kernel_entries"] / n
    if variant in ("syscalls", "uring_separate"):
        assert entries == k
    elif variant in ("uring_link", "uring_hardlink"):
        assert entries == 1
    else:
        assert 1 <= entries <= k


@pytest.mark.parametrize("variant", ["syscalls", "uring_separate", "uring_link"])
def test_open_read_close_reads_the_files_bytes(tmp_path, variant):
    k = 7
    _, res, c = chain(variant, tmp_path, op="open_read_close", k=k)
    assert c["blocks_verified"] == (k - 2) * c["chains"]
    # the checksum of the last chain's buffers, against the file read here
    data = (tmp_path / "chains.dat").read_bytes()
    assert len(data) == (k - 2) * 4096
    words = np.frombuffer(data, dtype="<u8")
    assert c["checksum"] == int(words.sum(dtype=np.uint64))
    assert c["checksum"] != 0


def test_deferred_task_work_makes_wait1_enter_per_completion(tmp_path):
    # DEFER_TASKRUN runs the next link only while the task waits: reaping
    # one CQE at a time then costs about an enter per atom, which is what
    # waiting for min_events = k at once (async_wait) saves
    k = 8
    _, _, one = chain("uring_link", tmp_path, k=k, taskrun="defer")
    _, _, each = chain("uring_link_wait1", tmp_path, k=k, taskrun="defer")
    assert one["kernel_entries"] == one["chains"]
    assert each["kernel_entries"] >= (k - 1) * each["chains"]


def test_uncached_on_tmpfs_says_what_to_change():
    with open("/proc/mounts") as f:
        if not any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in f):
            pytest.skip("/dev/shm is not a tmpfs here")
    import tempfile
    with tempfile.TemporaryDirectory(dir="/dev/shm") as d:
        with pytest.raises(ValueError, match="cached=false: .* keeps the file's pages"):
            chains.run_chain("syscalls", params(op="read", cached=False), CPU, d)


def test_variant_run_reports_per_chain_counters(tmp_path):
    hs = standalone_handshake()
    ctx = RunContext(cpu=CPU, peer_cpu=CPU, handshake=hs, scratch_dir=str(tmp_path))
    m = chains.FAMILY.variant("uring_link").run(params(k=5, fail_at=2), ctx)
    assert m.ops == 40 and m.series["chain"].size == 40
    assert m.counters["canceled_per_chain"] == 3
    assert m.counters["completions_per_chain"] == 5
    assert m.counters["kernel_entries_per_chain"] == 1


def test_workers_restore_the_callers_affinity(tmp_path):
    before = os.sched_getaffinity(0)
    chain("syscalls", tmp_path, op="read")
    chain("uring_link", tmp_path, op="open_read_close", k=4, fail_at=3)
    assert os.sched_getaffinity(0) == before


# ---- combinations that cannot run --------------------------------------------

@pytest.mark.parametrize("kw, words", [
    ({"op": "open_read_close", "k": 2}, ["op=open_read_close", "k >= 3", "k=2"]),
    ({"k": 4, "fail_at": 5}, ["fail_at=5", "k=4"]),
])
def test_bad_combinations_fail_with_one_line(tmp_path, kw, words):
    with pytest.raises(ValueError) as e:
        chain("uring_link", tmp_path, **kw)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    # the C worker refuses them too, whoever calls it
    spec = ffi.new("struct chains_spec *", {"op": chains.OPS.index(params(**kw)["op"]),
                                            "k": kw["k"], "cached": 1,
                                            "fail_at": kw.get("fail_at", 0), "cpu": CPU,
                                            "dir": ffi.new("char[]", str(tmp_path).encode())})
    out = np.zeros(4)
    counts = ffi.new("struct chains_counts *")
    hs = standalone_handshake()
    assert lib.chains_syscalls(hs, spec, 0, 4, ffi.cast("double *", ffi.from_buffer(out)),
                               ffi.NULL, counts) == -errno.EINVAL


def test_impossible_points_of_a_sweep_are_skipped_with_their_reason(tmp_path):
    suite = tmp_path / "sweep.toml"
    suite.write_text("[suite]\nrepetitions = 1\n[chains]\nvariants = ['uring_link']\n"
                     "op = 'open_read_close'\nk = [2, 4]\nsamples = 10\n")
    proc = run_lab(["run", str(suite), "--out", str(tmp_path / "res"), "--probes=none",
                    "--quiet"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "skipping chains/uring_link: cannot run this point: op=open_read_close needs k >= 3" \
        in proc.stderr
    manifest = store.read_manifest(run_dir_of(str(tmp_path / "res")))
    assert [(r["params"]["k"], r["status"]) for r in manifest["runs"]] == [(4, "ok")]
    (skip,) = manifest["skipped"]
    assert skip["params"]["k"] == 2 and "needs k >= 3" in skip["reason"]


def test_only_impossible_points_run_nothing_and_write_nothing(tmp_path):
    suite = tmp_path / "bad.toml"
    suite.write_text("[suite]\nrepetitions = 1\n[chains]\nvariants = ['uring_link']\n"
                     "op = 'open_read_close'\nk = 2\nsamples = 10\n")
    proc = run_lab(["run", str(suite), "--out", str(tmp_path / "res"), "--probes=none",
                    "--quiet"], timeout=120)
    assert proc.returncode == 2         # bad input: the suite asks only for the impossible
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"lab: error: {suite}: nothing to run here") and "needs k >= 3" in line
    assert not (tmp_path / "res").exists()


# ---- the kernel's count (root) -------------------------------------------------

N = 1009        # chains: prime, so a matching count is no coincidence
SLACK = 32      # the handshake's own system calls


def test_linked_chain_is_one_system_call_by_the_probes(tmp_path):
    require_probes()
    suite = tmp_path / "probed.toml"
    suite.write_text(f"""
[suite]
repetitions = 1
timeout = 60
[chains]
variants = ["syscalls", "uring_separate", "uring_link"]
op = "nop"
k = 8
samples = {N}
warmup = 20
""")
    proc = run_lab(["run", str(suite), "--out", str(tmp_path / "res"), "--quiet"], timeout=180)
    assert proc.returncode == 0, proc.stderr
    run_dir = run_dir_of(str(tmp_path / "res"))
    import pandas as pd
    metrics = pd.read_parquet(os.path.join(run_dir, store.METRICS))
    runs = {r["variant"]: r for r in store.read_manifest(run_dir)["runs"]}

    def per_op(variant, metric):
        run = runs[variant]
        assert run["status"] == "ok" and run["kernel_view"] and run["ops"] == N
        rows = metrics[(metrics.run_id == run["id"]) & (metrics.metric == metric)
                       & (metrics.key == "")]
        return float(rows.value.iloc[0])

    slack = SLACK / N
    assert 1 <= per_op("uring_link", "syscalls_per_op") <= 1 + slack
    assert 8 <= per_op("uring_separate", "syscalls_per_op") <= 8 + slack
    assert 8 <= per_op("syscalls", "syscalls_per_op") <= 8 + slack
    for variant in ("uring_link", "uring_separate"):
        assert per_op(variant, "submits_per_op") == 8
        assert per_op(variant, "completions_per_op") == 8
        assert runs[variant]["counters"]["kernel_entries_per_chain"] == \
            (1 if variant == "uring_link" else 8)
    assert per_op("syscalls", "submits_per_op") == 0
