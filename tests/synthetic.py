"""Results folders with known numbers, built run by run, for the report
sections' tests: what lab.store writes after a suite, without running one."""

from __future__ import annotations

import dataclasses

import numpy as np

from lab import store

# the environment facts of a VM whose idle vCPUs halt (the sections explain
# cross-CPU costs with them)
HALTPOLL = {"power.cpuidle_driver": "haltpoll", "power.haltpoll_guest_poll_ns": 0}


def exact_median(median: float, n: int = 100, seed: int = 0, spread: float = 0.05) -> np.ndarray:
    """n (even) samples whose median, and mean, is exactly ``median``:
    symmetric noise of ``spread`` times the median around it."""
    noise = np.abs(np.random.default_rng(seed).normal(0, spread * median, n // 2)) + 1
    return np.concatenate([median - noise, median + noise])


def variant_params(family, variant: str, **values) -> dict:
    """The parameters ``variant`` of ``family`` reads, at their defaults
    unless ``values`` says otherwise (keys it does not read are dropped)."""
    v = next(x for x in family.variants if x.name == variant)
    defaults = {p.name: p.default for p in family.params}
    out = {name: defaults[name] for name in v.params}
    out.update({k: val for k, val in values.items() if k in v.params})
    return out


class SyntheticRun:
    """A run folder: ``add`` one ok run at a time, then ``write`` the
    manifest (and metrics.parquet, if any run has ``kernel`` metrics)."""

    def __init__(self, run_dir, probed: bool = False):
        self.run_dir = str(run_dir)
        self.probed = probed
        self.runs: list[dict] = []
        self.metric_rows: list[tuple] = []
        (run_dir / store.SAMPLES_DIR).mkdir(parents=True)

    def add(self, family: str, variant: str, params: dict, series: dict, rep: int,
            counters: dict, ops: int, window_ns: float = 10**7,
            kernel: dict | None = None) -> dict:
        """One ok run; ``kernel``: its metrics (name -> per-op value), kept
        only when the folder is probed.  Returns the manifest entry."""
        run_id = len(self.runs) + 1
        rel = store.write_samples(self.run_dir, run_id, series)
        entry = dataclasses.asdict(store.RunRecord(
            run_id, family, variant, params, rep, cpu=0, peer_cpu=1, kernel_view=self.probed,
            status=store.OK, duration_s=0.1, window_ns=int(window_ns), ops=ops,
            samples_file=rel, n_samples={k: len(v) for k, v in series.items()},
            counters=counters))
        if self.probed:
            self.metric_rows.extend((run_id, "x", metric, "", float(value))
                                    for metric, value in (kernel or {}).items())
        self.runs.append(entry)
        return entry

    def write(self, name: str, families: dict, repetitions: int, probes: tuple = (),
              environment: dict | None = None) -> str:
        """The manifest of a complete suite run: ``families`` name ->
        Family (described as the runner does); ``probes``: the kernel view's
        probes when the folder is probed."""
        if self.metric_rows:
            store.write_metrics(self.run_dir, self.metric_rows)
        described = {f: family.describe() for f, family in families.items()}
        manifest = store.new_manifest(
            suite={"name": name, "path": "x.toml", "description": "synthetic",
                   "settings": {"repetitions": repetitions, "probe_overhead": False},
                   "families": {f: {"variants": [], "values": {}} for f in described}},
            package_version="test", git_revision="test", started_at=None, ended_at=None,
            status="complete", environment=environment or {}, capabilities={},
            kernel_view=({"enabled": True, "probes": list(probes), "reason": None,
                          "headers": "synthetic", "tracepoints": {}} if self.probed else
                         {"enabled": False, "probes": [], "reason": "synthetic"}),
            families=described, skipped=[], runs=self.runs)
        store.write_manifest(self.run_dir, manifest)
        return self.run_dir


# two hosts for lab dataset: one kernel each, a different CPU each
HOST_A = {"kernel.release": "6.18.0-a", "kernel.machine": "x86_64", "cpu.model": "AMD EPYC",
          "cpu.online": 2, "system.virtualization": "KVM (Firecracker)", "noise.loadavg_1min": 0.1,
          **HALTPOLL}
HOST_B = {"kernel.release": "6.1.0-b", "kernel.machine": "x86_64", "cpu.model": "Intel Xeon",
          "cpu.online": 4, "system.virtualization": "none", "power.cpuidle_driver": "intel_idle",
          "noise.loadavg_1min": 0.5}
# known user-side medians [ns] per (variant, placement) on each host; the
# host A runs with probes attached (each cell's last repetition) are
# PROBED_SLOWER times slower, so a median over every run would differ
HOST_MEDIANS = {
    "a": {("null_syscall", None): 110.0, ("futex_pingpong", "same_cpu"): 900.0,
          ("futex_pingpong", "cross_cpu"): 24000.0},
    "b": {("null_syscall", None): 70.0, ("futex_pingpong", "same_cpu"): 650.0,
          ("futex_pingpong", "cross_cpu"): 5200.0},
}
PROBED_SLOWER = 1.5


def two_hosts(tmp_path, reps: int = 3) -> tuple[str, str]:
    """Two results folders of the baseline family with HOST_MEDIANS, from
    hosts HOST_A and HOST_B.  Host A's folder is probed, its last
    repetition of each cell with probes and the others without (paired
    cells: user-side numbers leave the probed runs out); host B's is not."""
    from lab.families.baseline import FAMILY
    out = []
    for name, env, probed in (("a", HOST_A, True), ("b", HOST_B, False)):
        synth = SyntheticRun(tmp_path / f"host-{name}", probed=probed)
        for rep in range(reps):
            with_probes = probed and rep == reps - 1
            for (variant, placement), median in HOST_MEDIANS[name].items():
                params = variant_params(FAMILY, variant, placement=placement, samples=100)
                metrics = [m.name for m in next(v for v in FAMILY.variants
                                                if v.name == variant).metrics]
                scale = PROBED_SLOWER if with_probes else 1.0
                series = {m: exact_median(median * scale * (k + 1), seed=rep)
                          for k, m in enumerate(metrics)}
                entry = synth.add("baseline", variant, params, series, rep,
                                  {"iterations": 100.0 + rep}, ops=100,
                                  kernel={"switches_per_op": 2.0} if with_probes else None)
                entry["kernel_view"] = with_probes
        out.append(synth.write(f"host-{name}", {"baseline": FAMILY}, reps, environment=env,
                               probes=("switches",) if probed else ()))
    return out[0], out[1]
