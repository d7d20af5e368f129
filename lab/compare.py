"""``lab compare``: stored runs side by side (the data: analysis.compare).

Checks the folders (one line and exit status 2 for each kind of bad
input), prints the table grouped by family, and writes the exports and the
PDF, each to a temporary name renamed at the end."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

EXIT_BAD_INPUT = 2
EXIT_REGRESSION = 1

HELP = """\
Compare two or more stored runs: for every (family, variant, point) they
share, each run's median of the headline metric (--all-metrics: every
metric), the ratio of each run to the FIRST with its 95% interval, a rank
test and a verdict, and beside it what the kernel view saw differently.

  ratio, 95% interval   this run's median / the first run's; the interval is
                        the report's hierarchical bootstrap (repetitions,
                        then samples within them), both runs resampled
                        independently, 1000 resamples (--resamples)
  p (Holm)              Mann-Whitney U on the pooled SAMPLES of the two runs
                        (two-sided, normal approximation, tie-corrected),
                        Holm-corrected over every row of the comparison
  verdict               faster / slower when told apart: corrected p < 0.05
                        AND the interval excludes 1; else "not told apart"
                        (samples of one run are not independent, so the test
                        alone is optimistic: the interval, which resamples
                        repetitions, must agree)
  noisy                 a run's repetition medians spread over 10% of its median
  bimodal               in half of a run's repetitions the samples split in
                        two modes: the best two-way split of the log samples
                        leaves >= 10% on each side, medians >= 10% apart, and
                        Ashman's D > 4 between the parts
  kernel view           differences (this run - the first) in switches/op,
                        syscalls/op, punts/op and wake-to-run p50, where both
                        runs have a kernel view

On top: the environment fingerprint keys (lab doctor's facts, and the
tuning in force when the manifest records it) whose values differ; cells
present in only some runs are listed below the table.
Exit status: 0; 1 when --fail-above finds a regression; 2 for bad input."""

EPILOG = """\
examples:
  lab compare results/20261201-090000-quick results/20261202-090000-quick
  lab compare OLD NEW --pdf compare.pdf --csv compare.csv
  lab compare OLD NEW --fail-above 10        # CI gate: exit 1 if a row is >10% slower
  lab compare results/*-quick --by kernel.release   # pool runs per kernel, compare kernels
  lab compare OLD NEW --family baseline --all-metrics"""


def add_parser(sub, formatter_class) -> None:
    """Register ``lab compare`` with the CLI's subparsers."""
    p = sub.add_parser("compare", formatter_class=formatter_class,
                       help="compare stored runs: ratios, tests, verdicts, kernel view",
                       description=HELP, epilog=EPILOG)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="results folders (or `latest`); the first is the baseline")
    p.add_argument("--by", metavar="KEY",
                   help="group the folders by this fingerprint key (e.g. kernel.release, "
                        "power.haltpoll_guest_poll_ns) and compare the groups, a group's runs "
                        "pooled as repetitions; the first group is the first folder's")
    p.add_argument("--family", action="append", metavar="NAME",
                   help="only this family (repeatable)")
    p.add_argument("--all-metrics", action="store_true",
                   help="every metric, not only each variant's headline metric")
    p.add_argument("--fail-above", type=float, metavar="PCT",
                   help="exit status 1 when a row is told apart as slower than the first run "
                        "by more than PCT percent (the rows are named)")
    p.add_argument("--pdf", metavar="FILE", help="write a ratio forest plot per family")
    p.add_argument("--csv", metavar="FILE", help="write the rows as CSV")
    p.add_argument("--json", metavar="FILE",
                   help="write the rows, the environment differences and the cells some "
                        "runs lack as JSON")
    p.add_argument("--resamples", type=int, default=None, metavar="N",
                   help="bootstrap resamples per cell (default 1000, the report's; 200..10000)")
    p.add_argument("--root", default="results", help="where `latest` looks (default: results)")
    p.set_defaults(func=cmd_compare)


def _error(message: str) -> int:
    print(f"lab: error: compare: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _peek_version(run_dir: str):
    """The manifest's format_version, read without the schema check (so
    two folders of different versions are told as that), or None."""
    from lab import store
    try:
        with open(os.path.join(run_dir, store.MANIFEST), "rb") as f:
            manifest = json.load(f)
        return manifest.get("format_version") if isinstance(manifest, dict) else None
    except (OSError, ValueError, RecursionError):
        return None


def _identity(manifest: dict):
    """What names a suite run wherever its folder is copied: its suite
    and start time (None when the manifest has no start time)."""
    started = manifest.get("started_at")
    return (manifest.get("suite", {}).get("name"), started) if started else None


def load_runs(args_dirs: list[str], root: str):
    """The runs, checked: each a results folder this lab reads, none still
    being written, all of one format version, no run twice."""
    from analysis import load_run
    from lab import lock, store

    dirs = [store.resolve_run_dir(d, root) for d in args_dirs]
    versions = {d: _peek_version(d) for d in dirs}
    known = {v for v in versions.values() if v is not None}
    if len(known) > 1:
        listed = ", ".join(f"{d}: {v}" for d, v in versions.items())
        raise store.ResultsError(f"runs of different results format versions ({listed}); "
                                 "compare runs of one version (re-run the older suite)")
    seen: dict[str, str] = {}
    identities: dict[tuple, str] = {}
    manifests = []
    for d in dirs:
        real = os.path.realpath(d)
        if real in seen:
            raise store.ResultsError(f"{d} is given twice ({seen[real]}): a run compared with "
                                     "itself; give two different results folders")
        seen[real] = d
        manifest = store.read_manifest(d)
        holder = lock.folder_holder(d)
        if manifest.get("status") == "running" and holder is not None:
            raise store.ResultsError(f"{d} is still being written (by {holder}); wait for that "
                                     "lab run to finish, then compare")
        ident = _identity(manifest)
        if ident is not None and ident in identities:
            raise store.ResultsError(f"{d} and {identities[ident]} are the same suite run "
                                     f"({ident[0]} started {ident[1]}; one is a copy of the "
                                     "other): a run compared with itself")
        if ident is not None:
            identities[ident] = d
        manifests.append(manifest)
    return [load_run(d) for d in dirs]


def _only_families(runs, families):
    """The runs restricted to some families (a shallow view of each Run)."""
    import dataclasses
    if not families:
        return runs
    out = []
    for run in runs:
        keep = {f: v for f, v in run.families.items() if f in families}
        samples = run.samples[run.samples["family"].astype(str).isin(families).to_numpy()]
        out.append(dataclasses.replace(run, families=keep, samples=samples))
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    from lab import store
    if args.fail_above is not None and not (math.isfinite(args.fail_above)
                                            and args.fail_above >= 0):
        return _error(f"--fail-above {args.fail_above}: give a percentage >= 0, e.g. 10")
    if args.resamples is not None and not 200 <= args.resamples <= 10000:
        return _error(f"--resamples {args.resamples} is out of range; allowed 200..10000")
    for option in ("pdf", "csv", "json"):
        path = getattr(args, option)
        if path is None:
            continue
        if os.path.isdir(path):
            return _error(f"--{option} {path}: a folder; give a file name")
        try:
            store.require_writable(os.path.dirname(os.path.abspath(path)),
                                   fix=f"give --{option} a path in a folder you can write")
        except store.ResultsError as e:
            return _error(str(e))
    try:
        runs = load_runs(args.run_dirs, args.root)
    except store.ResultsError as e:
        return _error(str(e))
    except OSError as e:
        return _error(f"{e.filename or ''}: {e.strerror or e}; check the folder's files and "
                      "their permissions (ls -lR)")
    from analysis import compare as cmp
    if args.family:
        unknown = [f for f in args.family if not any(f in r.families for r in runs)]
        if unknown:
            return _error(f"--family {', '.join(unknown)}: in none of the runs")
        runs = _only_families(runs, set(args.family))
    try:
        if args.by:
            sides = cmp.group_by_key(runs, args.by)
        else:
            if len(runs) < 2:
                raise cmp.CompareError("give at least two results folders (or --by KEY)")
            sides = [cmp.Side(_label(r.path, runs), [r]) for r in runs]
        comparison = cmp.compare(sides, all_metrics=args.all_metrics,
                                 resamples=args.resamples or cmp.RESAMPLES)
    except cmp.CompareError as e:
        return _error(str(e))
    print("\n".join(text_lines(comparison, sides)))
    try:
        if args.csv:
            with store.atomic_output(args.csv) as tmp:
                comparison.rows.to_csv(tmp, index=False)
        if args.json:
            store.atomic_write(args.json, json.dumps(json_record(comparison), indent=1,
                                                     default=str).encode() + b"\n")
        if args.pdf:
            from analysis.sections.compare import write_compare_pdf
            write_compare_pdf(comparison, args.pdf, sides[0].runs[0])
            print(args.pdf)
    except OSError as e:
        return _error(f"{e.filename or ''}: {e.strerror or e}; check that folder (free space, "
                      "permissions)")
    if args.fail_above is not None:
        slower = comparison.slower_than(args.fail_above)
        if len(slower):
            print(f"lab compare: {len(slower)} row{'s' if len(slower) != 1 else ''} slower "
                  f"than {comparison.sides[0]} by more than {args.fail_above:g}%:",
                  file=sys.stderr)
            for r in slower.itertuples(index=False):
                print(f"  {r.run}: {r.family}/{r.variant} {r.point} {r.metric}: "
                      f"{cmp.slowdown(r.ratio, r.unit):+.1%}", file=sys.stderr)
            return EXIT_REGRESSION
    return 0


def _label(path: str, runs) -> str:
    """A run's name in the table: its folder's name (the whole path when
    two folders share a name)."""
    names = [os.path.basename(os.path.normpath(r.path)) for r in runs]
    name = os.path.basename(os.path.normpath(path))
    return name if names.count(name) == 1 else os.path.normpath(path)


def json_record(c) -> dict:
    def clean(records):
        return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in r.items()} for r in records]
    return {"sides": c.sides, "resamples": c.resamples,
            "environment": [{"key": k, "values": v} for k, v in c.environment],
            "only_in": c.only_in.to_dict("records"),
            "rows": clean(c.rows.to_dict("records"))}


def text_lines(c, sides) -> list[str]:
    """The terminal table: the environment differences, then per compared
    run and family one block of rows, then the cells some runs lack."""
    from analysis._format import align_text, fmt_ratio, fmt_ratio_interval, fmt_value
    from analysis.compare import KERNEL_DIFFS, NOT_TOLD_APART, telling_points

    out = ["runs: " + "; ".join(f"{s.label} ({len(s.runs)} folder"
                                f"{'s' if len(s.runs) != 1 else ''})" if len(s.runs) > 1
                                else s.label for s in sides)]
    if c.environment:
        out.append("environment that differs:")
        header = ["key"] + c.sides
        out += align_text(header, [[k] + [str(v) for v in values] for k, values in c.environment])
    else:
        out.append("environment: the fingerprints agree (readings of the moment aside)")
    rows = c.rows
    out.append(f"first: the median of {c.sides[0]}; this: the run's; ratio: this / first with "
               f"its 95% interval ({c.resamples} bootstrap resamples); d ...: this - first in "
               "the kernel view")
    for run in c.sides[1:]:
        mine = rows[rows["run"] == run]
        for family, part in mine.groupby("family", sort=False):
            out.append("")
            told = int((part["verdict"] != NOT_TOLD_APART).sum())
            out.append(f"{family}: {run} against {c.sides[0]} ({len(part)} rows, {told} told "
                       "apart)")
            points = telling_points(part["point"])
            multi_metric = part["metric"].nunique() > len(part.groupby("variant"))
            kernel = [(col, head) for col, head in KERNEL_DIFFS
                      if part[f"d_{col}"].notna().any()]
            header = (["variant", "point"] + (["metric"] if multi_metric else []) + ["unit"]
                      + ["first", "this", "ratio", "95% interval", "p (Holm)", "verdict", "flags"]
                      + [f"d {h}" for _, h in kernel])
            right = ([False, False] + ([False] if multi_metric else []) + [False]
                     + [True, True, True, True, True, False, False] + [True] * len(kernel))
            lines = []
            for r in part.itertuples(index=False):
                flags = ",".join(f for f, on in (("noisy", r.noisy), ("bimodal", r.bimodal)) if on)
                line = ([str(r.variant), points[str(r.point)]]
                        + ([str(r.metric)] if multi_metric else []) + [str(r.unit)]
                        + [fmt_value(r.median_baseline), fmt_value(r.median), fmt_ratio(r.ratio),
                           fmt_ratio_interval(r.ci_low, r.ci_high), _fmt_p(r.p_holm),
                           str(r.verdict), flags])
                line += [_fmt_diff(getattr(r, f"d_{col}")) for col, _ in kernel]
                lines.append(line)
            out += align_text(header, lines, right=right)
    if len(c.only_in):
        out.append("")
        out.append(f"cells not in every run ({len(c.only_in)}; not compared):")
        out += align_text(["family", "variant", "point", "metric", "present in"],
                          c.only_in.astype(str).values.tolist())
    return out


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"


def _fmt_diff(d: float) -> str:
    from analysis._format import fmt_value
    if not math.isfinite(d):
        return "-"
    return ("+" if d > 0 else "") + fmt_value(d)
