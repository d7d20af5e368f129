"""The ``lab`` command.  One ``cmd_<name>`` per subcommand; heavy imports
(NumPy, pandas, matplotlib, the native extension) happen inside them so that
``lab --help`` is instant."""

from __future__ import annotations

import argparse
import os
import sys

from lab.native import NativeError

EXIT_BAD_INPUT = 2
EXIT_BUSY = 75          # EX_TEMPFAIL: another measurement holds the machine
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
upcall-lab: upcalls, scheduler activations, syscalls as messages and syslet
chains, rebuilt with today's kernel mechanisms and measured on this machine.

typical session:
  lab doctor                          can this machine run the lab? what makes it noisy?
  lab list                            families, variants, parameters
  lab run experiments/quick.toml      measure (results/<time>-quick/)
  lab show latest                     the summary table
  lab report latest                   the PDF report
"""


def _print_error(message: str) -> None:
    print(f"lab: error: {message}", file=sys.stderr)


def cmd_doctor(args: argparse.Namespace) -> int:
    from lab.environment import run_doctor
    if not args.probe_cost:
        return run_doctor(as_json=args.json)
    if not 1 <= args.repetitions <= 100:
        _print_error(f"doctor: --repetitions {args.repetitions} is out of range; allowed 1..100")
        return EXIT_BAD_INPUT
    from lab import probes
    reason = probes.unavailable_reason()
    if reason:
        _print_error(f"doctor --probe-cost: the probes cannot run here: {reason}")
        return EXIT_BAD_INPUT
    status = run_doctor(as_json=args.json)
    measured = _measure_probe_cost(args.repetitions, quiet=args.json)
    if isinstance(measured, int):
        return measured
    if args.json:
        print(measured.to_json(orient="records"))
    return status


PROBE_COST_SUITE = """
[suite]
name = "probe-cost"
description = "lab doctor --probe-cost: each probe alone against no probes"
repetitions = {reps}
probe_overhead = true

[probe_cost]
samples = 1000
warmup = 100
"""


def _measure_probe_cost(repetitions: int, quiet: bool):
    """Run the probe_cost family (lab run, in a folder that is deleted
    after) and print each probe's cost per program run: the table, or an
    exit status when the run failed (its stderr said why)."""
    import subprocess
    import tempfile

    from analysis import load_run
    from analysis._format import align_text
    from analysis._probe_cost import COST_NOTE, cost_rows, probe_cost_table
    with tempfile.TemporaryDirectory(prefix="lab-probe-cost-") as tmp:
        suite = os.path.join(tmp, "probe-cost.toml")
        with open(suite, "w") as f:
            f.write(PROBE_COST_SUITE.format(reps=repetitions))
        if not quiet:
            print(f"\nmeasuring each probe's cost ({repetitions} interleaved repetitions, "
                  "about 5 s each) ...", flush=True)
        proc = subprocess.run([sys.executable, "-m", "lab.cli", "run", suite, "--out",
                               os.path.join(tmp, "results"), "--quiet"],
                              stdout=subprocess.DEVNULL)
        if proc.returncode != 0:
            return proc.returncode
        from lab import store
        run = load_run(store.latest_run_dir(os.path.join(tmp, "results")))
        if not quiet:
            header, rows = cost_rows(run)
            print("probe cost, per program run on a run's events (this machine, now):")
            print("\n".join(align_text(header, rows)))
            print(f"  {COST_NOTE}; a workload's overhead with the probes is about the sum "
                  "over probes of its runs per operation (lab show: probe_runs_<probe>_per_op) "
                  "times these")
        return probe_cost_table(run).drop(columns=["workload"])


def cmd_list(args: argparse.Namespace) -> int:
    from lab import families
    from lab.suite import SUITE_SETTINGS

    unknown = [n for n in args.family if n not in families.FAMILY_NAMES]
    if unknown:
        _print_error(f"list: unknown family {', '.join(unknown)}; known: "
                     + ", ".join(families.FAMILY_NAMES))
        return EXIT_BAD_INPUT
    shown = [f for f in families.all_families().values() if not args.family or f.name in args.family]
    params = list(SUITE_SETTINGS) + [p for f in shown for p in f.params]
    width = max(len("parameter"), *(len(p.name) for p in params))

    def param_line(p) -> str:
        unit = p.unit or "-"
        return (f"    {p.name:<{width}} {p.default!s:<10} {unit:<11} {p.describe_range():<22} "
                f"{p.help}")

    header = f"    {'parameter':<{width}} {'default':<10} {'unit':<11} {'range':<22} meaning"
    print("[suite] settings")
    print(header)
    for s in SUITE_SETTINGS:
        print(param_line(s))
    for fam in shown:
        print(f"\n[{fam.name}]  {fam.summary}")
        print(f"  seeds: {fam.seeds}")
        print("  variants:")
        for v in fam.variants:
            needs = f"  (needs {', '.join(v.requires)})" if v.requires else ""
            metrics = ", ".join(f"{m.name} [{m.unit}]" for m in v.metrics)
            print(f"    {v.name:<20} {v.help}{needs}")
            print(f"    {'':<20} params: {', '.join(v.params)}; records: {metrics}")
        print("  parameters (a value, or a list to sweep):")
        print(header)
        for p in fam.params:
            print(param_line(p))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import contextlib
    import os

    from lab import environment, lock, probes, runner, signals, store
    from lab import suite as suite_mod

    signals.install()
    try:
        wanted = probes.parse_selection(args.probes) if args.probes else None
        if args.resume:
            run_dir = store.resolve_run_dir(args.resume, args.out)
            manifest = store.read_manifest(run_dir)
            store.require_writable(run_dir)
            timeout = manifest["suite"]["settings"].get(
                "timeout", suite_mod.suite_setting("timeout").default)
            if wanted is None:      # the probes the run began with, unless told
                wanted = tuple((manifest.get("kernel_view") or {}).get("probes") or ())
        else:
            suite = suite_mod.load(args.suite)
            _check_out(args.out, suite.name)
            facts = environment.collect()
            caps = environment.capabilities(facts)
            native_missing = caps.get("native")
            if native_missing:
                _print_error(native_missing)
                return 1
            # all bad input is found before probes load or anything is written
            runs, skipped = runner.plan(suite, caps)
            runner.check_cpus(suite, runs)
            if not runs:
                why = "; ".join(dict.fromkeys(f"{x['family']}/{x['variant']}: {x['reason']}"
                                              for x in skipped[:3]))
                _print_error(f"{suite.path}: nothing to run here, every point was skipped: {why}")
                return EXIT_BAD_INPUT
            timeout = suite.settings["timeout"]
    except (suite_mod.SuiteError, store.ResultsError, ValueError) as e:
        _print_error(str(e))
        return EXIT_BAD_INPUT

    with contextlib.ExitStack() as stack:
        # one measurement per machine, taken before the probes compile
        try:
            slot = lock.machine(run_dir if args.resume else f"lab run {args.suite}",
                                wait=args.wait,
                                on_wait=lambda h: signals.say(lock.wait_message(h)))
            stack.callback(slot.release)
            if args.resume:
                stack.callback(lock.folder(run_dir).close)
        except lock.Busy as e:
            _print_error(str(e))
            return EXIT_BUSY
        if args.resume:
            signals.say(f"resuming {run_dir}")
        session, kernel_view = _start_probes(stack, wanted, explicit=args.probes is not None)
        if args.resume:
            if session is None:
                signals.say(f"no kernel view for the resumed runs: {kernel_view['reason']}")
            manifest["kernel_view_on_resume"] = kernel_view
        else:
            # the same plan, now knowing whether the runs get the kernel view
            runs, skipped = runner.plan(suite, caps, kernel_view=session is not None)
            for s in skipped:
                signals.say(f"skipping {s['family']}/{s['variant']}: {s['reason']}")
            if session is None:
                signals.say(f"no kernel view: {kernel_view['reason']}")
            # a folder with its manifest, or none; a stop that comes
            # meanwhile is the runner's to record
            with signals.held(raise_after=False):
                run_dir = store.create_run_dir(args.out, suite.name)
                stack.callback(lock.folder(run_dir).close)
                store.atomic_write(os.path.join(run_dir, store.SUITE_COPY), suite.text.encode())
                manifest = runner.new_manifest(suite, runs, skipped,
                                               environment.fingerprint(facts), caps, kernel_view)
                store.write_manifest(run_dir, manifest)
        slot.note(run_dir)
        manifest["machine_lock"] = slot.describe
        try:
            status = runner.Runner(run_dir, manifest, timeout, probes=session,
                                   progress=not args.quiet).execute()
        except OSError as e:        # the results folder failed us (disk full...)
            _print_error(f"{run_dir}: {e}; finished runs are kept; continue with: "
                         f"lab run --resume {run_dir}")
            return 1

    runs = manifest["runs"]
    counts: dict[str, int] = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    signals.say(f"{status}: {summary} -> {run_dir}")
    company = sum(1 for r in runs if r.get("alongside"))
    if company:
        signals.say(f"warning: {company} runs had another lab measurement beside them "
                    "(`alongside` in the manifest): their numbers are perturbed")
    if status == "interrupted":
        signals.say(f"stopped by {manifest.get('stopped_by')}; finished runs are kept; "
                    f"continue with: lab run --resume {run_dir}")
        return EXIT_INTERRUPTED
    if args.report:
        from analysis.report import write_report
        print(write_report(run_dir))
    else:
        print(run_dir)
    return 0


def _check_out(root: str, suite_name: str) -> None:
    """--out must be a folder this user can create run folders in, and the
    run folder's name must fit: found before anything compiles or is made."""
    import datetime
    import os
    import tempfile

    from lab import store
    probe = root
    while not os.path.exists(probe):     # the folder that would hold the new ones
        parent = os.path.dirname(os.path.abspath(probe))
        if parent == os.path.abspath(probe):
            break
        probe = parent
    if not os.path.isdir(probe):
        raise store.ResultsError(f"--out {root}: {probe} is not a folder; give a folder "
                                 "to put run folders in")
    try:        # a real try: access() says yes to root on an immutable folder
        os.rmdir(tempfile.mkdtemp(prefix=".lab-probe-", dir=probe))
    except OSError as e:
        raise store.ResultsError(f"--out {root}: cannot create folders in {probe}: "
                                 f"{e.strerror}; give a folder you can write, e.g. "
                                 "--out ~/lab-results") from None
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{suite_name}-99".encode()
    try:
        limit = os.pathconf(probe, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    if len(name) > limit:
        raise store.ResultsError(f"--out {root}: a run folder named after suite.name would be "
                                 f"{len(name)} bytes, over this file system's {limit}: "
                                 "shorten suite.name")


def _start_probes(stack, wanted, explicit: bool):
    """Start the probe session a run asked for.  Returns (session or None,
    the manifest's kernel_view record).  By default probes run when they
    can and a run without them says why; asked for explicitly and
    impossible, that is said too, and the runs still happen."""
    from lab import probes

    names = probes.CONCERN_NAMES if wanted is None else wanted
    record = {"enabled": False, "probes": list(names), "reason": None}
    if not names:
        record["reason"] = "probes switched off (--probes=none)"
        return None, record
    reason = probes.unavailable_reason()
    if reason is None:
        print("compiling and attaching probes: " + ", ".join(names), file=sys.stderr)
        try:
            session = stack.enter_context(probes.ProbeSession(names))
        except (probes.ProbeError, OSError) as e:
            reason = str(e)
        else:
            record.update(enabled=True, headers=session.headers.description,
                          tracepoints={c.name: list(c.tracepoints) for c in session.concerns})
            return session, record
    record["reason"] = reason
    return None, record


def cmd_show(args: argparse.Namespace) -> int:
    """Reads only: works on a folder the user may not write."""
    from lab import store
    try:
        run_dir = store.resolve_run_dir(args.run_dir, args.root)
        from analysis import load_run, show_text
        print(show_text(load_run(run_dir), family=args.family))
    except store.ResultsError as e:
        _print_error(str(e))
        return EXIT_BAD_INPUT
    except OSError as e:        # what the store does not check: a file gone mid-read...
        _print_error(f"{e.filename or args.run_dir}: {e.strerror or e}; check the folder's "
                     "files and their permissions (ls -lR)")
        return EXIT_BAD_INPUT
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import os

    from lab import store
    try:
        run_dir = store.resolve_run_dir(args.run_dir, args.root)
        # the PDF's folder is checked before the report is drawn, not after
        if args.output and os.path.isdir(args.output):
            raise store.ResultsError(f"{args.output}: a folder, not a PDF file; use -o "
                                     f"{os.path.join(args.output, 'NAME.pdf')}")
        if args.output:
            store.require_writable(os.path.dirname(os.path.abspath(args.output)),
                                   fix="use -o PATH in a folder that exists and you can write")
        else:
            store.require_writable(run_dir, fix="use -o PATH")
        # damaged results are refused before matplotlib loads; the run read
        # here is the one drawn (its manifest checked once, its files read once)
        from analysis import load_run
        run = load_run(run_dir)
        from analysis.report import write_report
        print(write_report(run_dir, args.output, run=run))
    except store.ResultsError as e:
        _print_error(str(e))
        return EXIT_BAD_INPUT
    except OSError as e:        # writing the PDF failed (disk full...)
        _print_error(f"{e.filename or args.output or args.run_dir}: {e.strerror or e}; "
                     "check that folder (free space, permissions), or use -o PATH")
        return EXIT_BAD_INPUT
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    from lab import dataset, store
    try:
        gathered = dataset.gather(args.run_dirs, args.out)
    except (dataset.DatasetError, store.ResultsError) as e:
        _print_error(f"dataset: {e}")
        return EXIT_BAD_INPUT
    except OSError as e:        # writing the dataset failed (disk full...)
        _print_error(f"dataset: {e.filename or args.out}: {e.strerror or e}; check that folder "
                     "(free space, permissions)")
        return EXIT_BAD_INPUT
    for ident, host, kernel in gathered:
        print(f"{ident}  host={host} kernel={kernel}")
    print(args.out)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from lab import signals, tune
    signals.install()
    return tune.command(args.cpus, args.reset, args.dry_run, say=signals.say, error=_print_error)


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="lab", description=DESCRIPTION, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("doctor", formatter_class=fmt, help="describe this machine; can the lab run?",
                       description="Kernel, CPU, virtualisation, clocksource, cpuidle, mitigations,\n"
                                   "privileges, io_uring and BPF state, and what makes the machine noisy.\n"
                                   "Exit status 0 when the lab can run, 1 (with the reasons) when not.",
                       epilog="examples:\n  lab doctor\n  lab doctor --json > machine.json\n"
                              "  lab doctor --probe-cost      # also measure each probe's cost "
                              "(root, ~20 s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--probe-cost", action="store_true",
                   help="also measure what each probe costs per program run: the probe_cost "
                        "family, each probe alone against no probes, interleaved (a lab run: "
                        "it takes the machine lock)")
    p.add_argument("--repetitions", type=int, default=3, metavar="N",
                   help="repetitions for --probe-cost (default 3)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("list", formatter_class=fmt, help="families, variants and parameters",
                       description="Every family, its variants and every parameter with its\n"
                                   "default, unit and allowed range: what a suite file may set.",
                       epilog="examples:\n  lab list\n  lab list baseline")
    p.add_argument("family", nargs="*", help="only these families")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("run", formatter_class=fmt, help="run a suite, store its results",
                       description="Run every (variant, parameter point) of a suite the configured\n"
                                   "number of times, interleaved, each run in its own pinned worker\n"
                                   "process with a timeout.  Results go to OUT/<time>-<suite>/.\n"
                                   "Ctrl-C, SIGTERM or SIGHUP stop cleanly and keep the finished\n"
                                   "runs (a second Ctrl-C does not cut the cleanup short).\n"
                                   "One lab run measures on a machine at a time: a second one\n"
                                   f"refuses (exit status {EXIT_BUSY}) or, with --wait, waits.\n"
                                   f"Bad input: exit status {EXIT_BAD_INPUT}; interrupted: "
                                   f"{EXIT_INTERRUPTED}.",
                       epilog="examples:\n"
                              "  lab run experiments/quick.toml\n"
                              "  lab run experiments/baseline.toml --out /var/tmp/lab --report\n"
                              "  lab run experiments/quick.toml --probes=switches,syscalls\n"
                              "  lab run --resume results/20261122-101500-baseline")
    p.add_argument("suite", nargs="?", help="suite file (TOML), e.g. experiments/quick.toml")
    p.add_argument("--out", default="results", metavar="DIR",
                   help="where run folders are created (default: results)")
    p.add_argument("--report", action="store_true", help="write the PDF report at the end and print its path")
    p.add_argument("--resume", metavar="RUN_DIR", help="finish the pending runs of an interrupted run folder")
    p.add_argument("--probes", metavar="all|none|LIST",
                   help="kernel probes beside every run: all (default when root and bcc work), "
                        "none, or a comma-separated list of: switches, wakeups, syscalls, "
                        "io_uring, migrations")
    p.add_argument("--wait", action="store_true",
                   help="if another lab run is measuring on this machine, wait for it to end "
                        f"(default: refuse, exit status {EXIT_BUSY})")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("show", formatter_class=fmt, help="summary table of a stored run",
                       description="Median, p90, p99 and their spread for every variant and point.",
                       epilog="examples:\n  lab show latest\n"
                              "  lab show results/20261122-101500-quick baseline")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a results folder, or `latest`")
    p.add_argument("family", nargs="?", help="only this family")
    p.add_argument("--root", default="results", help="where `latest` looks (default: results)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", formatter_class=fmt, help="PDF report of a stored run",
                       description="Title page with the environment, then per family its table\n"
                                   "and figures.  Prints the PDF's path.",
                       epilog="examples:\n  lab report latest\n"
                              "  lab report results/20261122-101500-quick -o quick.pdf")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a results folder, or `latest`")
    p.add_argument("-o", "--output", help="PDF path (default: RUN_DIR/report.pdf)")
    p.add_argument("--root", default="results", help="where `latest` looks (default: results)")
    p.set_defaults(func=cmd_report)

    # its help in its module (light at import: pyarrow and pandas load in cmd_dataset)
    from lab import dataset

    dataset.add_parser(sub, fmt, cmd_dataset)

    from lab import compare
    compare.add_parser(sub, fmt)


    p = sub.add_parser("tune", formatter_class=fmt, help="make this machine quieter; --reset undoes it",
                       description="As root: guest halt polling on (a 200 us window that stays open),\n"
                                   "a 0 us /dev/cpu_dma_latency hold (a holder process), IRQs off the\n"
                                   "measured CPUs, the performance cpufreq governor where there is one.\n"
                                   "Each file's old contents are saved in /run/upcall-lab/tune.json\n"
                                   "before it changes; --reset puts them back and ends the hold.\n"
                                   "`lab doctor` shows what is untuned; every manifest records the\n"
                                   "tuning in force (environment keys tuning.*).  Not root: prints\n"
                                   f"what it would do, exit status 1.  Bad input: {EXIT_BAD_INPUT}.",
                       epilog="examples:\n  lab tune --dry-run      # what would change (old -> new)\n"
                              "  lab tune                # tune for measuring on CPU 0\n"
                              "  lab tune --cpus 0,2     # ... on CPUs 0 and 2 (IRQs go to the others)\n"
                              "  lab tune --reset        # put everything back")
    p.add_argument("--reset", action="store_true", help="put back what lab tune changed")
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    p.add_argument("--cpus", metavar="LIST",
                   help="the CPUs to keep interrupts off, e.g. 0 or 0,2-3 (default: the suites' "
                        "default cpu, 0); at least one online CPU must be left")
    p.set_defaults(func=cmd_tune)
    return parser


def _version() -> str:
    from lab import __version__
    return f"upcall-lab {__version__}"


def _terminate(signum, frame):
    raise KeyboardInterrupt     # SIGTERM stops like Ctrl-C: cleanly, state restored


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and not args.suite and not args.resume:
        parser.error("run: give a SUITE.toml or --resume RUN_DIR")
    signal.signal(signal.SIGTERM, _terminate)
    if args.command != "run":
        # `lab list | head` ends quietly; never for run, whose writes to a
        # dead worker's pipe must raise BrokenPipeError, not kill the runner
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return args.func(args)
    except NativeError as e:
        # the families read their enums from the extension when imported:
        # an unbuilt checkout gets one line saying what to run, not a traceback
        print(f"lab: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        from lab import signals
        signals.ignore_late()


if __name__ == "__main__":
    sys.exit(main())
