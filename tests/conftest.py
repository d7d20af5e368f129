"""Shared fixtures: a real tiny suite run, and synthetic run folders whose
statistics are known in advance."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lab import store

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_SUITE = """\
[suite]
name = "tiny"
description = "the analysis tests' run: every baseline variant, briefly"
repetitions = 2
timeout = 30

[baseline]
samples = 50
warmup = 10
ops_per_sample = 10
placement = ["same_cpu", "cross_cpu"]
batch = [4]
"""


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> str:
    """A results folder written by the real runner (`lab run`) on a tiny suite."""
    base = tmp_path_factory.mktemp("tiny")
    suite = base / "tiny.toml"
    suite.write_text(TINY_SUITE)
    out = base / "results"
    proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", str(suite), "--out", str(out),
                           "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"lab run failed ({proc.returncode}):\n{proc.stderr}"
    return store.latest_run_dir(str(out))


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


@pytest.fixture
def make_run(tmp_path):
    """make_run({(variant, level): [rep0 values, rep1 values, ...]}) -> run folder
    holding exactly those samples (family "synth", metric "lat")."""
    def make(cells: dict[tuple[str, str], list], statuses: dict[int, tuple[str, str]] = None,
             name: str = "synth") -> str:
        run_dir = tmp_path / name
        (run_dir / store.SAMPLES_DIR).mkdir(parents=True)
        runs = []
        for (variant, level), reps in cells.items():
            for rep, values in enumerate(reps):
                run_id = len(runs) + 1
                status, reason = (statuses or {}).get(run_id, (store.OK, None))
                values = np.asarray(values, dtype=float)
                rel = store.write_samples(str(run_dir), run_id, {"lat": values})
                runs.append({"id": run_id, "family": "synth", "variant": variant,
                             "params": {"samples": len(values), "level": level},
                             "repetition": rep, "cpu": 0, "peer_cpu": 1, "status": status,
                             "reason": reason, "started_at": None, "duration_s": 0.1,
                             "window_ns": None, "samples_file": rel,
                             "n_samples": {"lat": int(len(values))}, "counters": {}})
        manifest = {
            "format": store.FORMAT, "format_version": store.FORMAT_VERSION,
            "suite": {"name": "synth", "path": "synth.toml", "description": "synthetic",
                      "settings": {"repetitions": max(len(r) for r in cells.values())},
                      "families": {"synth": {"variants": ["slow", "fast"],
                                             "values": {"level": ["low", "high"]}}}},
            "package_version": "test", "git_revision": "test", "started_at": None,
            "ended_at": None, "status": "complete", "environment": {"power.cpuidle_driver": "menu"},
            "capabilities": {}, "kernel_view": {"enabled": False, "reason": "synthetic"},
            "families": {"synth": SYNTH_FAMILY}, "skipped": [], "runs": runs,
        }
        store.write_manifest(str(run_dir), manifest)
        return str(run_dir)
    return make
