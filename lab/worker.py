"""The worker process: one measured run, then exit.

The runner starts one *zygote* per suite run, ``python -S -m lab.worker
--zygote FD`` (lab.runner.WORKER_COMMAND, the runner's module path in
PYTHONPATH), which imports what every worker needs once (NumPy, the
families, the native extension, bcc) and then forks a worker per run on
request (serve()): a fresh interpreter's start cost 0.12-0.15 s a run here,
most of it NumPy's import, as long as a short run's whole measurement.
Each run still lives in its own process, in its own session, so the probes
filter on its pid, a crash loses one run only, and CPU pinning starts
clean; the zygote forks twice, so the worker is the runner's child (the
runner is a child subreaper), which waits for it and kills its group as
it would a process it had started itself.

A worker reads its JSON spec on stdin (``python -S -m lab.worker`` alone
is one, for the tests).  Python only sets up and collects: the variant's
``run`` calls one C function that does the warm-up, the handshake with the
runner and the measured loop.

Results come back as files, not prints: ``<output>.npz`` (the sample
arrays) and ``<output>.json`` (window, counters).  Exit 0 on success; on
failure the last line on stderr is the reason.
"""

from __future__ import annotations

import json
import os
import sys

# How a worker is told from the zygote, which is none (lab.lock.is_worker):
# both have the zygote's command line (ZYGOTE_ARG in it); a forked worker
# names itself WORKER_COMM (/proc/PID/comm) before it reads its spec, the
# zygote names itself ZYGOTE_COMM once it runs (ps shows both)
ZYGOTE_ARG = "--zygote"
ZYGOTE_COMM = "lab-zygote"
WORKER_COMM = "lab-worker"


def main() -> int:
    spec = json.load(sys.stdin)
    import numpy as np

    from lab import families
    from lab.model import RunContext
    from lab.native import NativeError, load
    from lab.programs import SPEC_KEY

    family = families.get(spec["family"])
    variant = family.variant(spec["variant"])
    ffi, _ = load()
    handshake = ffi.new("struct lab_handshake *",
                        {"ready_fd": spec["ready_fd"], "go_fd": spec["go_fd"]})
    # The whole process starts on the worker CPU; C pins its own threads.
    os.sched_setaffinity(0, {spec["cpu"]})
    ctx = RunContext(cpu=spec["cpu"], peer_cpu=spec["peer_cpu"], handshake=handshake,
                     scratch_dir=spec["scratch_dir"])
    if SPEC_KEY in spec:            # loaded by the runner for the suite: attach, not compile
        from lab import programs
        programs.use_shared(spec[SPEC_KEY])
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


# -- the zygote ----------------------------------------------------------------

def _preload() -> None:
    """Import what a worker imports.  What fails here fails again in the
    worker, which then says why on its stderr, as a fresh one would."""
    try:
        import numpy  # noqa: F401

        from lab import families  # noqa: F401
        from lab.native import load
        load()
    except Exception:   # noqa: BLE001 -- the worker reports it
        return
    try:
        import bcc  # noqa: F401 -- the upcall and reply-port programs' runs
    except Exception:   # noqa: BLE001
        pass


def serve(sock_fd: int) -> int:
    """The zygote's loop: each request on the socket (SCM_RIGHTS: the
    worker's stdin, stderr and the fds its spec names; the message: those
    fds' numbers in the runner, JSON) forks a worker and answers its pid;
    EOF (the runner closed it, or died) ends the zygote."""
    import socket
    _set_comm(ZYGOTE_COMM)
    _preload()
    with socket.socket(fileno=sock_fd) as sock:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(sock, 65536, 256)
            except OSError:
                return 1
            if not msg:
                return 0
            try:
                pid = _fork_worker(sock, fds, json.loads(msg))
            finally:
                for fd in fds:      # the worker's only: its exit is EOF to the runner
                    os.close(fd)
            sock.send(str(pid).encode())


def _fork_worker(sock, fds: list[int], numbers: list[int]) -> int:
    """Fork twice: the worker's parent exits at once, so the worker is
    reparented to the runner (the nearest child subreaper above it).  The
    worker's pid once it leads its own session (the runner may kill its
    group from then on), or -errno."""
    r, w = os.pipe()
    try:
        middle = os.fork()
    except OSError as e:
        os.close(r)
        os.close(w)
        return -(e.errno or 1)
    if middle == 0:
        code = 0
        try:
            os.close(r)
            if os.fork() == 0:
                sock.close()
                os.setsid()
                os.write(w, str(os.getpid()).encode())
                os.close(w)
                _become_worker(fds, numbers)     # never returns
        except BaseException:   # noqa: BLE001 -- the zygote answers -1
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        answer = f.read()       # EOF: the middle process and the worker closed it
    os.waitpid(middle, 0)       # reaped: the worker is the runner's now
    return int(answer) if answer else -1


def _become_worker(fds: list[int], numbers: list[int]) -> None:
    """In the forked worker, which leads its session already: what
    subprocess.Popen(pass_fds=numbers, close_fds=True) would give it, then
    main()."""
    import signal
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        _set_comm(WORKER_COMM)
        # out of the way of the numbers the spec names, then onto them
        high = max([2, *numbers, *fds]) + 1
        import fcntl
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, high) for fd in fds]
        for entry in os.listdir("/proc/self/fd"):
            if int(entry) > 2 and int(entry) not in moved:
                try:
                    os.close(int(entry))
                except OSError:     # the listing's own fd
                    pass
        stdin, stderr, *named = moved
        os.dup2(stdin, 0)
        os.dup2(stderr, 2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
        for fd, number in zip(named, numbers):
            os.dup2(fd, number)
        for fd in moved:
            os.close(fd)
        code = main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:   # noqa: BLE001 -- a worker's traceback is its reason
        import traceback
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:   # noqa: BLE001
                pass
        os._exit(code)


def _set_comm(name: str) -> None:
    with open("/proc/self/comm", "w") as f:
        f.write(name)


if __name__ == "__main__":
    if sys.argv[1:2] == [ZYGOTE_ARG]:
        sys.exit(serve(int(sys.argv[2])))
    sys.exit(main())
