"""Shared fixtures: a real tiny suite run, and synthetic run folders whose
statistics are known in advance."""

from __future__ import annotations

import dataclasses
import os
import shutil

import numpy as np
import pytest

from lab import store

from .helpers import run_lab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_BASELINE = """\
[suite]
name = "tiny"
description = "the analysis tests' run: every baseline variant, a few syncfirst and chains points"
repetitions = 2
timeout = 30
probe_overhead = true   # as root: every run also without probes (kernel view and overhead)

[baseline]
samples = 50
warmup = 10
ops_per_sample = 10
placement = ["same_cpu", "cross_cpu"]
batch = [4]
"""

# seed 003's families, small: the crossover's two ends, chains of two lengths,
# and one chain whose third atom fails (the stop-on-failure table)
TINY_SUITE = TINY_BASELINE + """
[syncfirst]
variants = ["sync", "syncfirst", "pool", "uring"]
hit_ratio = [0.0, 1.0]
file_mb = 1
samples = 60
warmup = 10

[[chains]]
k = [2, 8]
op = "nop"
samples = 100
warmup = 10

[[chains]]
variants = ["uring_link"]
k = 8
op = "nop"
fail_at = 3
samples = 100
warmup = 10
"""


@pytest.fixture(scope="session", autouse=True)
def machine_to_ourselves(pytestconfig):
    """The tests hold the lab's machine lock for the whole session: tests
    that read global kernel state (loaded BPF programs, the tracefs mount)
    cannot be disturbed by a lab run, nor can a lab run by them.  The lab
    runs the tests start are nested in this lock (lab.lock)."""
    from lab import lock

    def say(holder):
        capture = pytestconfig.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\n{lock.wait_message(holder)}", flush=True)

    slot = lock.machine(f"pytest in {REPO}", wait=True, on_wait=say)
    yield slot
    slot.release()


def _tiny(tmp_path_factory, name: str, *options: str, text: str = TINY_SUITE) -> str:
    base = tmp_path_factory.mktemp(name)
    suite = base / "tiny.toml"
    suite.write_text(text)
    out = base / "results"
    proc = run_lab(["run", str(suite), "--out", str(out), "--quiet", *options], cwd=REPO)
    assert proc.returncode == 0, f"lab run failed ({proc.returncode}):\n{proc.stderr}"
    return store.latest_run_dir(str(out))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> str:
    """A results folder written by the real runner (`lab run`) on a tiny suite:
    every baseline variant, syncfirst's sync, syncfirst, pool and uring at
    hit_ratio 0 and 1, every chains variant at k = 2 and 8 (NOPs), and
    uring_link chains whose third atom fails."""
    return _tiny(tmp_path_factory, "tiny")


@pytest.fixture(scope="session")
def tiny_run_without_probes(tmp_path_factory) -> str:
    """The tiny suite's baseline table run with `--probes=none`: no kernel
    view, by choice."""
    return _tiny(tmp_path_factory, "tiny-none", "--probes=none", text=TINY_BASELINE)


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    """A private copy of tiny_run that a test may edit (manifest, samples)."""
    def copy(name: str = "copy") -> str:
        dst = tmp_path / name
        shutil.copytree(tiny_run, dst, ignore=shutil.ignore_patterns("report.pdf"))
        return str(dst)
    return copy


SYNTH_FAMILY = {
    "summary": "synthetic samples with known statistics",
    "seeds": "none",
    "reference": "slow",
    "params": {
        "samples": {"unit": "samples", "help": "recorded samples per run", "axis": False},
        "level": {"unit": "", "help": "an axis", "axis": True},
    },
    "variants": {
        "slow": {"help": "the reference", "metrics": {"lat": {"unit": "ns", "help": "latency"}},
                 "headline": "lat"},
        "fast": {"help": "the other", "metrics": {"lat": {"unit": "ns", "help": "latency"}},
                 "headline": "lat"},
    },
}


SYNTH_HEADERS = "synthetic kernel headers (stand-in)"
SYNTH_OPS = 100


@pytest.fixture
def make_run(tmp_path):
    """make_run({(variant, level): [rep0 values, rep1 values, ...]}) -> run folder
    holding exactly those samples (family "synth", metric "lat").

    A key (variant, level, probed) says whether those runs had probes
    attached (kernel_view); without it they had none.  metrics(run) and
    wakeups(run) give, for each run with probes (its manifest entry), its
    rows (probe, metric, key, value) for metrics.parquet and its wake-up
    records (a NumPy structured array, or None).  probe_overhead sets the
    suite setting of that name."""
    def make(cells: dict[tuple, list], statuses: dict[int, tuple[str, str]] = None,
             name: str = "synth", probe_overhead: bool = False, metrics=None,
             wakeups=None) -> str:
        run_dir = tmp_path / name
        (run_dir / store.SAMPLES_DIR).mkdir(parents=True)
        runs, metric_rows = [], []
        for key, reps in cells.items():
            variant, level = key[:2]
            probed = bool(key[2]) if len(key) > 2 else False
            for rep, values in enumerate(reps):
                run_id = len(runs) + 1
                status, reason = (statuses or {}).get(run_id, (store.OK, None))
                values = np.asarray(values, dtype=float)
                rel = store.write_samples(str(run_dir), run_id, {"lat": values})
                entry = dataclasses.asdict(store.RunRecord(
                    run_id, "synth", variant, {"samples": len(values), "level": level}, rep,
                    cpu=0, peer_cpu=1, kernel_view=probed, status=status, reason=reason,
                    duration_s=0.1, ops=SYNTH_OPS, samples_file=rel,
                    n_samples={"lat": int(len(values))}))
                if probed and metrics is not None:
                    metric_rows += [(run_id,) + tuple(row) for row in metrics(entry)]
                records = wakeups(entry) if probed and wakeups is not None else None
                if records is not None and len(records):
                    entry["kernel_file"] = store.write_wakeups(str(run_dir), run_id, records)
                runs.append(entry)
        if metric_rows:
            store.write_metrics(str(run_dir), metric_rows)
        any_probes = any(r["kernel_view"] for r in runs)
        manifest = store.new_manifest(
            suite={"name": "synth", "path": "synth.toml", "description": "synthetic",
                   "settings": {"repetitions": max(len(r) for r in cells.values()),
                                "probe_overhead": probe_overhead},
                   "families": {"synth": {"variants": ["slow", "fast"],
                                          "values": {"level": ["low", "high"]}}}},
            package_version="test", git_revision="test", started_at=None, ended_at=None,
            status="complete", environment={"power.cpuidle_driver": "menu"}, capabilities={},
            kernel_view=({"enabled": True, "probes": ["switches", "wakeups", "syscalls"],
                          "reason": None, "headers": SYNTH_HEADERS, "tracepoints": {}}
                         if any_probes else {"enabled": False, "probes": [],
                                             "reason": "synthetic"}),
            families={"synth": SYNTH_FAMILY}, skipped=[], runs=runs)
        store.write_manifest(str(run_dir), manifest)
        return str(run_dir)
    return make
