"""The worker process: one measured run, then exit.

Started by the runner as ``python -S -m lab.worker`` with a JSON spec on stdin
(and the runner's module path in PYTHONPATH: lab.runner.WORKER_COMMAND).
Each run lives in its own process so the probes filter on its pid, a crash
loses one run only, and CPU pinning starts clean.  Python only sets up and
collects: the variant's ``run`` calls one C function that does the warm-up,
the handshake with the runner and the measured loop.

Results come back as files, not prints: ``<output>.npz`` (the sample
arrays) and ``<output>.json`` (window, counters).  Exit 0 on success; on
failure the last line on stderr is the reason.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    spec = json.load(sys.stdin)
    import numpy as np

    from lab import families
    from lab.model import RunContext
    from lab.native import NativeError, load

    family = families.get(spec["family"])
    variant = family.variant(spec["variant"])
    ffi, _ = load()
    handshake = ffi.new("struct lab_handshake *",
                        {"ready_fd": spec["ready_fd"], "go_fd": spec["go_fd"]})
    # The whole process starts on the worker CPU; C pins its own threads.
    os.sched_setaffinity(0, {spec["cpu"]})
    ctx = RunContext(cpu=spec["cpu"], peer_cpu=spec["peer_cpu"], handshake=handshake,
                     scratch_dir=spec["scratch_dir"])
    if "upcall_program" in spec:    # loaded by the runner for the suite: attach, not compile
        from lab import upcall_program
        upcall_program.use_shared(spec["upcall_program"])
    try:
        measurement = variant.run(spec["params"], ctx)
    except (NativeError, OSError, ValueError) as e:
        print(f"{family.name}/{variant.name}: {e}", file=sys.stderr)
        return 1

    for metric, arr in measurement.series.items():
        bad = ~np.isfinite(arr) | (arr < 0)
        if arr.size == 0 or bad.any():
            print(f"{family.name}/{variant.name}: {metric}: {int(bad.sum())} of {arr.size} "
                  "samples are negative or not finite: a worker bug, not a measurement",
                  file=sys.stderr)
            return 1
    # counters become columns beside the parameters in the analysis tables
    taken = {p.name for p in family.params} | {"ops", "window_ns", "throughput", "variant",
                                               "point", "repetition"}
    clash = sorted(set(measurement.counters) & taken)
    if clash:
        print(f"{family.name}/{variant.name}: counter {clash[0]!r} has the name of a "
              "parameter or a run column: rename the counter (a worker bug)", file=sys.stderr)
        return 1
    np.savez(spec["output"] + ".npz", **measurement.series)
    result = {
        "window_ns": int(handshake.window_end_ns - handshake.window_begin_ns),
        "ops": int(measurement.ops),
        "counters": measurement.counters,
    }
    with open(spec["output"] + ".json", "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
