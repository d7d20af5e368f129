"""README's "Adding a family" is true: in a copy of the tree, a throwaway
family written into exactly the files that section names (and nothing
else) is built, shows up in `lab list`, runs, gets its own report section,
and its notebook runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import pdf_text, run_dir_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAME = "throwaway"
# what a reader of the PDF can only see if the family's own section ran
SECTION_MARK = "The throwaway family's own section"
TREE = ("lab", "analysis", "native", "experiments", "notebooks", "setup.py", "pyproject.toml",
        "README.md")

C_SOURCE = """\
/*
 * Family `throwaway` (throwaway.c): two clock reads back to back, written
 * by tests/test_adding_a_family.py to prove README's "Adding a family".
 */
#include "internal.h"
#include "throwaway.h"

int throwaway_clock_gap(struct lab_handshake *hs, uint64_t warmup,
			uint64_t nr_samples, double *gap_ns)
{
	uint64_t s, t0;
	int err;

	for (s = 0; s < warmup + nr_samples; s++) {
		if (s == warmup && (err = lab_handshake_ready(hs, NULL, 0)))
			return err;
		t0 = now_ns();
		if (s >= warmup)
			gap_ns[s - warmup] = (double)(now_ns() - t0);
	}
	return lab_handshake_done(hs);
}
"""

C_HEADER = """\
/* Family `throwaway` (throwaway.c): part of the cffi cdef. */
#ifndef LAB_THROWAWAY_H
#define LAB_THROWAWAY_H

#include "lab_native.h"

int throwaway_clock_gap(struct lab_handshake *hs, uint64_t warmup,
			uint64_t nr_samples, double *gap_ns);

#endif /* LAB_THROWAWAY_H */
"""

FAMILY_MODULE = '''\
"""Family ``throwaway``: two clock reads back to back (a test's fixture)."""

from __future__ import annotations

from typing import Any

from lab.model import Family, Measurement, Metric, Param, RunContext, Variant

GAP = Metric("gap", "ns", "two clock reads back to back")


def _clock_gap(p: dict[str, Any], ctx: RunContext) -> Measurement:
    import numpy as np

    from lab import native
    from lab.native import check, double_ptr
    ffi, lib = native.load()
    out = np.zeros(p["samples"], dtype=np.float64)
    check(lib.throwaway_clock_gap(ctx.handshake, p["warmup"], p["samples"],
                                  double_ptr(ffi, out)), "clock gap")
    return Measurement({GAP.name: out}, ops=p["samples"])


FAMILY = Family(
    name="throwaway",
    summary="two clock reads back to back",
    seeds="none (a test's fixture)",
    params=(Param("samples", 200, "samples", "recorded samples per run", low=10, high=10_000,
                  axis=False),
            Param("warmup", 20, "samples", "unrecorded samples first", low=0, high=1_000,
                  axis=False)),
    reference="clock_gap",
    variants=(Variant("clock_gap", "now_ns() twice", _clock_gap, ("samples", "warmup"), (GAP,)),),
)
'''

ANALYSIS_MODULE = '''\
"""The throwaway family's analysis: how many gaps each run recorded."""

from __future__ import annotations

from analysis import Run


def gaps_per_run(run: Run) -> dict[int, int]:
    samples = run.samples[run.samples["family"].astype(str) == "throwaway"]
    return {int(k): int(v) for k, v in samples.groupby("run_id", observed=True).size().items()}
'''

SECTION_MODULE = f'''\
"""The throwaway family's report section: the generic one and a line."""

from __future__ import annotations

from analysis._pages import Report, Text
from analysis.families.throwaway import gaps_per_run
from analysis.sections import generic
from analysis.sections.registry import register


@register("throwaway")
def render(report: Report, family: str) -> None:
    runs = gaps_per_run(report.run)
    generic.render(report, family, extra_blocks=[
        Text(f"{SECTION_MARK}: {{len(runs)}} runs of {{min(runs.values())}} gaps")])
'''

NOTEBOOK_CELL = """\
import os
import analysis
from analysis.families.throwaway import gaps_per_run
run = analysis.load_run(os.environ["UPCALL_LAB_RUN"])
print("gaps per run:", gaps_per_run(run))
"""

SUITE_TABLE = """
[throwaway]
samples = 200
warmup = 20
"""


def readme_files() -> set[str]:
    """The files README's "Adding a family" names for family NAME: those
    each numbered item names before its first colon."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Adding a family", 1)[1].split("\n## ", 1)[0]
    items = re.split(r"^\d+\. ", section, flags=re.M)[1:]
    paths = [p for item in items for p in re.findall(r"`([^`]+)`", item.split(": ", 1)[0])]
    return {p.replace("<family>", NAME) for p in paths}


def _copy_tree(dest: str) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "build", "*.egg-info")
    for name in TREE:
        src = os.path.join(REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name), ignore=ignore)
        else:
            shutil.copy2(src, os.path.join(dest, name))


def _add_family(tree: str) -> set[str]:
    """Write the throwaway family; return the files written or edited."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_markdown_cell("# The throwaway family"),
                      nbformat.v4.new_code_cell(NOTEBOOK_CELL)]
    written = {
        f"native/{NAME}.c": C_SOURCE,
        f"native/{NAME}.h": C_HEADER,
        f"lab/families/{NAME}.py": FAMILY_MODULE,
        f"analysis/families/{NAME}.py": ANALYSIS_MODULE,
        f"analysis/sections/{NAME}.py": SECTION_MODULE,
        f"notebooks/{NAME}.ipynb": nbformat.writes(notebook),
        f"experiments/{NAME}.toml": ('[suite]\nname = "throwaway"\nrepetitions = 2\n'
                                     'cpu = 0\npeer_cpu = 1\n' + SUITE_TABLE),
    }
    for rel, text in written.items():
        with open(os.path.join(tree, rel), "w", encoding="utf-8") as f:
            f.write(text)
    with open(os.path.join(tree, "experiments/quick.toml"), "a", encoding="utf-8") as f:
        f.write(SUITE_TABLE)
    return set(written) | {"experiments/quick.toml"}


@pytest.fixture(scope="module")
def tree_with_family(tmp_path_factory):
    tree = str(tmp_path_factory.mktemp("tree"))
    _copy_tree(tree)
    touched = _add_family(tree)
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    return tree, touched


def _lab(tree: str, *args: str) -> subprocess.CompletedProcess:
    # the copy first on the path: the editable install points at REPO
    env = dict(os.environ, PYTHONPATH=tree)
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


def test_readme_names_exactly_the_files_a_family_touches(tree_with_family):
    _, touched = tree_with_family
    assert readme_files() == touched


def test_the_new_family_is_listed_runs_and_gets_its_section(tree_with_family, tmp_path,
                                                            monkeypatch):
    tree, _ = tree_with_family
    listed = _lab(tree, "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^\[{NAME}\]  two clock reads", listed.stdout, re.M), listed.stdout
    assert "clock_gap" in listed.stdout

    ran = _lab(tree, "run", "experiments/throwaway.toml", "--out", str(tmp_path / "results"), "--probes=none",
               "--quiet")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_dir = run_dir_of(str(tmp_path / "results"))
    with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as f:
        runs = json.load(f)["runs"]
    assert [r["status"] for r in runs] == ["ok", "ok"]
    assert {r["family"] for r in runs} == {NAME}

    report = _lab(tree, "report", run_dir, "--output", str(tmp_path / "report.pdf"))
    assert report.returncode == 0, report.stderr
    assert f"{SECTION_MARK}: 2 runs of 200 gaps" in pdf_text(str(tmp_path / "report.pdf"))

    monkeypatch.setenv("PYTHONPATH", tree)
    monkeypatch.setenv("UPCALL_LAB_RUN", run_dir)
    nb = nbformat.read(os.path.join(tree, "notebooks", f"{NAME}.ipynb"), as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": os.path.join(tree, "notebooks")}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "gaps per run:" in printed and ": 200" in printed
