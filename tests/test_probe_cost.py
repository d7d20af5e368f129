"""The probe-cost arithmetic (analysis/_probe_cost.py) on known numbers:
the measured overhead is the median of each repetition's twin-pair
difference, so a shift of the machine that both twins of a pair saw
cancels out."""

from analysis import load_run
from analysis._probe_cost import pair_deltas, predicted_overhead_table


def test_pair_deltas_are_the_median_of_each_repetitions_difference(make_run):
    # repetition 1 ran while the machine was twice as slow: both twins saw it
    cells = {("slow", "low", True): [[110.0] * 5, [210.0] * 5, [130.0] * 5],
             ("slow", "low", False): [[100.0] * 5, [200.0] * 5, [100.0] * 5]}
    run = load_run(make_run(cells, probe_overhead=True))
    d = pair_deltas(run, "synth").set_index("variant").loc["slow"]
    assert (d["delta"], d["delta_low"], d["delta_high"], d["pairs"]) == (10.0, 10.0, 30.0, 3)


def test_no_prediction_without_the_probe_cost_family(make_run):
    cells = {("slow", "low", True): [[110.0] * 5], ("slow", "low", False): [[100.0] * 5]}
    run = load_run(make_run(cells, probe_overhead=True))
    assert predicted_overhead_table(run, "synth").empty
