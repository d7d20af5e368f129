"""Fuzzing the suite loader (issue 11): whatever a suite file holds,
lab.suite.load and planning (lab.runner.plan, then check_cpus) either
succeed or raise SuiteError with one printable line that starts with the
file's path: never another exception, never a traceback.

Three sources of input: suites generated from what the families declare
(known keys with values at, inside and past their ranges, wrong types,
sweeps big enough to meet max_runs), the experiments/*.toml suites with
lines mutated (values, keys, tables, raw characters), and those suites'
bytes mutated (invalid UTF-8).  Values include integers of hundreds of
digits, NaN and infinities, unicode and control characters, and arrays
nested thousands deep.  Deterministic (derandomize, no example database)
and bounded, so CI runs it in seconds.
"""

import glob
import math
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab import families, store
from lab.environment import CAPABILITIES
from lab.runner import check_cpus, plan
from lab.suite import SUITE_SETTINGS, SuiteError, load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = [open(p, encoding="utf-8").read()
         for p in sorted(glob.glob(os.path.join(REPO, "experiments", "*.toml")))]
FAMILIES = families.all_families()
SUITE_KEYS = ["name", "description"] + [s.name for s in SUITE_SETTINGS]
EVERY_PARAM = list(SUITE_SETTINGS) + [p for f in FAMILIES.values() for p in f.params]

# what a machine may lack: everything there, or the usual gaps
ALL_THERE = dict.fromkeys(CAPABILITIES)
GAPS = dict(ALL_THERE, io_uring="EPERM: io_uring_disabled=2", two_cpus="only 1 CPU usable",
            bpf="no bpf")

# about 10 s in all on the 2-vCPU VM; about half the generated suites get
# past the loader into planning
FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=400,
                suppress_health_check=list(HealthCheck))


# -- TOML source for values ---------------------------------------------------

def toml_string(text: str) -> str:
    """A TOML basic string holding text exactly, control characters included."""
    out = []
    for c in text:
        if c in '"\\' or not c.isprintable() or not c.isascii():
            out.append(f"\\U{ord(c):08x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_float(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def toml_array(items) -> str:
    return "[" + ", ".join(items) + "]"


def mostly(likely, *rest):
    """likely four times in five: enough input must get past the first
    error to reach planning."""
    return st.one_of(likely, likely, likely, likely, st.one_of(*rest))


# strings with what a terminal or a folder name must not get raw
texts = st.one_of(
    st.sampled_from(["", ".", "..", "n" * 300, "\u00e9" * 60, "a/b", "a\\b", "\x1b[2J",
                     "two\nlines", "\x00", "r\u202etxt", "tab\there", "\x9b31m"]),
    st.text(alphabet=st.sampled_from("a\n\r\t\x1b\x00\x7f\x9b\u202e\u200b/\\.é😀 "),
            min_size=1, max_size=12),
    st.text(max_size=12),
)
keys = st.one_of(st.sampled_from(SUITE_KEYS + ["variants"] + [p.name for p in EVERY_PARAM]),
                 texts)
huge_ints = st.sampled_from(["1" + "0" * 400, "-" + "9" * 400, "9" * 4301,
                             "0x" + "f" * 300, str(2 ** 63), str(-2 ** 63 - 1)])


def _near_range(p):
    """Values a parameter meets at and past its edges, and its choices."""
    out = [p.default]
    for edge in (p.low, p.high):
        if edge is not None:
            out += [edge, edge - 1, edge + 1, edge + 0.5]
    return out + list(p.choices or ())


NEAR = sorted({repr(v): v for p in EVERY_PARAM for v in _near_range(p)}.values(), key=repr)


def scalar_source(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return toml_float(v)
    if isinstance(v, int):
        return str(v)
    return toml_string(v)


scalars = st.one_of(
    st.sampled_from(NEAR).map(scalar_source),
    st.integers().map(str),
    huge_ints,
    st.floats().map(toml_float),
    st.booleans().map(scalar_source),
    texts.map(toml_string),
    st.sampled_from([v.name for f in FAMILIES.values() for v in f.variants]).map(toml_string),
    st.sampled_from(["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00",
                     "1979-05-27T00:32:00.999999-07:00"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5).map(toml_array),
        st.dictionaries(keys, inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{toml_key(k)} = {v}" for k, v in d.items()) + "}")),
    max_leaves=8,
)
deep_arrays = st.sampled_from([30, 300, 3000]).map(lambda n: "[" * n + "1" + "]" * n)
odd_values = st.one_of(huge_ints, deep_arrays)
# sweeps: long lists of in-range integers meet max_runs and the planner
sweeps = st.lists(st.integers(1, 64), min_size=1, max_size=40, unique=True).map(
    lambda xs: toml_array(map(str, xs)))
any_value = mostly(st.one_of(values, sweeps), odd_values)


# -- suites -----------------------------------------------------------------

def _in_range(p):
    """Values a parameter accepts: its default, its edges, its choices."""
    if p.kind is bool:
        return [True, False]
    edges = [p.kind(e) for e in (p.low, p.high) if e is not None]
    return [p.default] + edges + list(p.choices or ())


def _sweep(p):
    """A value or a list of distinct accepted values."""
    ok = st.sampled_from(_in_range(p))
    return st.one_of(ok.map(scalar_source),
                     st.lists(ok, min_size=1, max_size=4, unique_by=repr).map(
                         lambda vs: toml_array(map(scalar_source, vs))))


@st.composite
def generated_suites(draw) -> str:
    """A suite built from what the families declare, then 0 to 3 faults:
    a value replaced by any value (past a range, of another type, nested,
    huge), a key, a table or a table header of anything, a name or a
    description of any characters."""
    tables = []         # [header, [(key source, value source), ...]]
    chosen = draw(st.lists(st.sampled_from(SUITE_SETTINGS), max_size=4, unique=True))
    body = [(s.name, scalar_source(draw(st.sampled_from(_in_range(s))))) for s in chosen]
    for key in draw(st.lists(st.sampled_from(["name", "description"]), unique=True)):
        body.append((key, toml_string(draw(st.text(alphabet="abcxyz-_ .", min_size=1,
                                                   max_size=20)))))
    if body:
        tables.append(["[suite]", body])
    for fam in draw(st.lists(st.sampled_from(list(FAMILIES)), min_size=1, max_size=3,
                             unique=True)):
        family = FAMILIES[fam]
        n = draw(st.integers(1, 3))
        for _ in range(n):
            body = []
            if draw(st.booleans()):
                chosen = draw(st.lists(st.sampled_from([v.name for v in family.variants]),
                                       min_size=1, max_size=4, unique=True))
                body.append(("variants", toml_array(map(toml_string, chosen))))
            for p in draw(st.lists(st.sampled_from(family.params), max_size=5, unique=True)):
                body.append((p.name, draw(_sweep(p))))
            tables.append([f"[[{fam}]]" if n > 1 else f"[{fam}]", body])
    for _ in range(draw(st.integers(0, 3))):
        fault = draw(st.sampled_from(["value", "value", "key", "table", "header", "text"]))
        header, body = draw(st.sampled_from(tables))
        if fault == "value" and body:
            i = draw(st.integers(0, len(body) - 1))
            body[i] = (body[i][0], draw(st.one_of(st.sampled_from(NEAR).map(scalar_source),
                                                  huge_ints, st.floats().map(toml_float),
                                                  any_value)))
        elif fault == "key":
            body.append((toml_key(draw(keys)), draw(any_value)))
        elif fault == "table":
            tables.append([f"[{toml_key(draw(texts))}]", []])
        elif fault == "text":       # what the terminal and the folder name get
            if tables[0][0] != "[suite]":
                tables.insert(0, ["[suite]", []])
            key = draw(st.sampled_from(["name", "description"]))
            tables[0][1] = [kv for kv in tables[0][1] if kv[0] != key]
            tables[0][1].append((key, toml_string(draw(texts))))
        elif fault == "header":
            tables[tables.index([header, body])][0] = draw(st.sampled_from(
                [header.strip("[]").join("[]"), header.strip("[]").join(["[[", "]]"]),
                 "[suite]", "[suite.x]"]))
    return "".join(f"{header}\n" + "".join(f"{k} = {v}\n" for k, v in body)
                   for header, body in tables)


@st.composite
def mutated_seeds(draw) -> str:
    lines = draw(st.sampled_from(SEEDS)).split("\n")
    headers = st.one_of(
        st.sampled_from(list(FAMILIES) + ["suite"]).map(lambda n: f"[{n}]"),
        st.sampled_from(list(FAMILIES) + ["suite"]).map(lambda n: f"[[{n}]]"),
        keys.map(lambda k: f"[{toml_key(k)}]"),
        st.just("[suite.sub]"),
    )
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        op = draw(st.sampled_from(["value", "value", "key", "delete", "duplicate", "insert",
                                   "header", "raw"]))
        if op == "value" and "=" in line:
            lines[i] = line.split("=", 1)[0] + "= " + draw(any_value)
        elif op == "key" and "=" in line:
            lines[i] = toml_key(draw(keys)) + " =" + line.split("=", 1)[1]
        elif op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, line)
        elif op == "insert":
            lines.insert(i, f"{toml_key(draw(keys))} = {draw(any_value)}")
        elif op == "header":
            lines.insert(i, draw(headers))
        elif op == "raw":
            at = draw(st.integers(0, len(line)))
            lines[i] = line[:at] + draw(st.text(min_size=1, max_size=4)) + line[at:]
    return "\n".join(lines)


@st.composite
def mutated_bytes(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)).encode())
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        data[at:at + draw(st.integers(0, 3))] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


# -- the property -------------------------------------------------------------

@pytest.fixture(scope="module")
def suite_path(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz") / "fuzz.toml")


@pytest.fixture(scope="module")
def results_root(tmp_path_factory):
    return str(tmp_path_factory.mktemp("results"))


def loads_and_plans_or_says_why_in_one_line(path: str, content, caps, kernel_view,
                                             results_root: str) -> None:
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())
    try:
        suite = load(path)
        runs, skipped = plan(suite, caps, kernel_view=kernel_view)
        assert len(runs) <= suite.planned_runs() <= suite.settings["max_runs"]
        check_cpus(suite, runs)
    except SuiteError as e:
        msg = str(e)
        assert msg.startswith(path + ": "), msg
        assert msg.isprintable(), msg       # one line, nothing raw for the terminal
        assert len(msg) < 1000, msg         # says why, does not echo the input back
        return
    # what passed is fit for the terminal and names a results folder
    assert suite.name.isprintable() and all(c.isprintable() or c in "\n\t"
                                            for c in suite.description)
    run_dir = store.create_run_dir(results_root, suite.name)
    os.rmdir(os.path.join(run_dir, store.SAMPLES_DIR))
    os.rmdir(run_dir)


capabilities = st.sampled_from([ALL_THERE, GAPS])


@FUZZ
@given(text=generated_suites(), caps=capabilities, kernel_view=st.booleans())
def test_generated_suites(suite_path, results_root, text, caps, kernel_view):
    loads_and_plans_or_says_why_in_one_line(suite_path, text, caps, kernel_view, results_root)


@FUZZ
@given(text=mutated_seeds(), caps=capabilities, kernel_view=st.booleans())
def test_mutated_experiments(suite_path, results_root, text, caps, kernel_view):
    loads_and_plans_or_says_why_in_one_line(suite_path, text, caps, kernel_view, results_root)


@settings(FUZZ, max_examples=100)
@given(data=mutated_bytes())
def test_mutated_bytes(suite_path, results_root, data):
    loads_and_plans_or_says_why_in_one_line(suite_path, data, ALL_THERE, False, results_root)


def test_unmutated_experiments_plan(suite_path, results_root):
    """What the mutations start from loads and plans: a mutation is one
    fault away from a suite that gets through."""
    for text in SEEDS:
        loads_and_plans_or_says_why_in_one_line(suite_path, text, ALL_THERE, True, results_root)
        assert load(suite_path).planned_runs() > 0
