"""The ``lab`` command.  One ``cmd_<name>`` per subcommand; heavy imports
(NumPy, pandas, matplotlib, the native extension) happen inside them so that
``lab --help`` is instant."""

from __future__ import annotations

import argparse
import sys

EXIT_BAD_INPUT = 2
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
    return run_doctor(as_json=args.json)


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

    from lab import environment, probes, runner, store, suite as suite_mod

    try:
        wanted = probes.parse_selection(args.probes) if args.probes else None
        if args.resume:
            run_dir = store.resolve_run_dir(args.resume, args.out)
            manifest = store.read_manifest(run_dir)
            timeout = manifest["suite"]["settings"]["timeout"]
            wanted = tuple(manifest["kernel_view"].get("probes") or ())
            print(f"resuming {run_dir}", file=sys.stderr)
        else:
            suite = suite_mod.load(args.suite)
            facts = environment.collect()
            caps = environment.capabilities(facts)
            if caps.get("native"):
                _print_error(caps["native"])
                return 1
            # all bad input is found before probes load or anything is written
            runs, skipped = runner.plan(suite, caps)
            runner.check_cpus(suite, runs)
            if not runs:
                why = "; ".join(dict.fromkeys(f"{x['family']}/{x['variant']}: {x['reason']}"
                                              for x in skipped[:3]))
                _print_error(f"{suite.path}: nothing to run here, every point was skipped: {why}")
                return 1
            timeout = suite.settings["timeout"]
    except (suite_mod.SuiteError, store.ResultsError, ValueError) as e:
        _print_error(str(e))
        return EXIT_BAD_INPUT

    with contextlib.ExitStack() as stack:
        session, kernel_view = _start_probes(stack, wanted, explicit=args.probes is not None)
        if args.resume:
            if wanted and session is None:
                print(f"no kernel view for the resumed runs: {kernel_view['reason']}",
                      file=sys.stderr)
        else:
            # the same plan, now knowing whether the runs get the kernel view
            runs, skipped = runner.plan(suite, caps, kernel_view=session is not None)
            for s in skipped:
                print(f"skipping {s['family']}/{s['variant']}: {s['reason']}", file=sys.stderr)
            if session is None:
                print(f"no kernel view: {kernel_view['reason']}", file=sys.stderr)
            run_dir = store.create_run_dir(args.out, suite.name)
            store.atomic_write(os.path.join(run_dir, store.SUITE_COPY), suite.text.encode())
            manifest = runner.new_manifest(suite, runs, skipped, environment.fingerprint(facts),
                                           caps, kernel_view)
            store.write_manifest(run_dir, manifest)
        status = runner.Runner(run_dir, manifest, timeout, probes=session,
                               progress=not args.quiet).execute()

    runs = manifest["runs"]
    counts = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"{status}: {summary} -> {run_dir}", file=sys.stderr)
    if status == "interrupted":
        print(f"finished runs are kept; continue with: lab run --resume {run_dir}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.report:
        from analysis.report import write_report
        print(write_report(run_dir))
    else:
        print(run_dir)
    return 0


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
    from lab import store
    try:
        run_dir = store.resolve_run_dir(args.run_dir, args.root)
        from analysis import load_run, show_text
        print(show_text(load_run(run_dir), family=args.family))
    except store.ResultsError as e:
        _print_error(str(e))
        return EXIT_BAD_INPUT
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from lab import store
    try:
        run_dir = store.resolve_run_dir(args.run_dir, args.root)
        from analysis.report import write_report
        print(write_report(run_dir, args.output))
    except store.ResultsError as e:
        _print_error(str(e))
        return EXIT_BAD_INPUT
    return 0


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
                       epilog="examples:\n  lab doctor\n  lab doctor --json > machine.json")
    p.add_argument("--json", action="store_true", help="machine-readable output")
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
                                   "Ctrl-C stops cleanly and keeps the finished runs.",
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
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("show", formatter_class=fmt, help="summary table of a stored run",
                       description="Median, p90, p99 and their spread for every variant and point.",
                       epilog="examples:\n  lab show latest\n  lab show results/20261122-101500-quick baseline")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a results folder, or `latest`")
    p.add_argument("family", nargs="?", help="only this family")
    p.add_argument("--root", default="results", help="where `latest` looks (default: results)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", formatter_class=fmt, help="PDF report of a stored run",
                       description="Title page with the environment, then per family its table\n"
                                   "and figures.  Prints the PDF's path.",
                       epilog="examples:\n  lab report latest\n  lab report results/20261122-101500-quick -o quick.pdf")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a results folder, or `latest`")
    p.add_argument("-o", "--output", help="PDF path (default: RUN_DIR/report.pdf)")
    p.add_argument("--root", default="results", help="where `latest` looks (default: results)")
    p.set_defaults(func=cmd_report)
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
    except KeyboardInterrupt:
        print("lab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
