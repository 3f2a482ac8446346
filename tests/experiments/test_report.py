"""Honest tables: better directions on the headers, a legend, the forget-test column dropped where it repeats the
forget set, a flag on methods without effect, aligned columns whatever the widths, and stable short timings."""

import math
import re
import time

import jax
import numpy as np
import pytest

from jaxunlearn.experiments import format_table, summarise
from jaxunlearn.experiments.classification import REPEAT_TOTAL_S, changed_fraction, measure


def _row(method, seed, forget, changed=0.5, forget_test=True, **extra):
    row = {"seed": seed, "method": method, "seconds": 0.25 + seed, "speedup": 3.0, "params_changed": changed,
           "acc_retain_train": 0.99, "acc_forget_train": forget, "acc_retain_test": 0.95, "mia": 0.1,
           "js_to_retrain": 0.01, "l1_to_retrain": 0.2, "zrf": 0.6, **extra}
    if forget_test:
        row["acc_forget_test"] = forget
    return row


def _rows(forget_test=True):
    methods = {"original": (1.0, 0.0), "retrain": (0.0, 1.0), "untouched": (0.3, 0.0), "timid": (0.995, 0.4),
               "working": (0.2, 0.3)}
    return [_row(m, s, f, c, forget_test) for s in (0, 1) for m, (f, c) in methods.items()]


def test_no_effect_flags_methods_that_changed_nothing_or_barely_moved():
    summaries = {s["method"]: s for s in summarise(_rows())}
    # by hand: "untouched" changed no parameter; "timid" moved forget accuracy 0.005 < 0.01 from the original's
    assert {m for m, s in summaries.items() if s.get("no_effect")} == {"untouched", "timid"}
    assert "no_effect" not in summaries["original"] and "no_effect" not in summaries["retrain"]
    table = format_table(list(summaries.values()), scenario="class:3")
    flagged = [line.split()[0] for line in table.splitlines() if "no effect" in line and "Dr" not in line]
    assert flagged[:2] == ["untouched", "timid"]
    assert "no effect: no parameter changed, or Df train within 1 point of the original's" in " ".join(
        table.split("\n\n")[1].split())


def test_headers_say_the_better_direction_and_the_legend_what_each_column_measures():
    table = format_table(summarise(_rows()), scenario="class:3")
    header = table.splitlines()[0]
    for text in ("Dr train ↑", "Df train ↓", "Dr test ↑", "Df test ↓", "MIA ≈R", "JS→R ↓", "time s ↓",
                 "×retrain ↑"):
        assert text in header, header
    legend = " ".join(table.split("\n\n")[1].split())
    assert legend.startswith("↑ higher is better, ↓ lower is better, ≈R closest to the retrain row is best")
    for text in ("Dr train: accuracy on the retained training samples", "MIA:", "ZRF:", "changed:", "time s:"):
        assert text in legend
    # outside full-class scenarios the retrained model keeps some forget accuracy: closest to it is best, and a
    # forget-test set that is the forgotten training samples again is not shown
    random_table = format_table(summarise(_rows(forget_test=False)), scenario="random:50")
    assert "Df train ≈R" in random_table.splitlines()[0] and "Df test" not in random_table.splitlines()[0]
    assert "no Df test: in this scenario the forget-test set is the forgotten training samples" in " ".join(
        random_table.split())


def test_columns_stay_aligned_whatever_the_widths():
    rows = _rows()
    rows[2]["speedup"] = 123456789.0
    rows[3]["method"] = "a_method_with_a_long_name"
    rows[4]["seconds"] = 1e-6
    table = format_table(summarise(rows), scenario="class:3", legend=False)
    lines = [line for line in table.splitlines() if not set(line) <= {"-"}]
    header, body = lines[0], lines[1:]
    assert header.split()[:2] == ["method", "flag"]
    ends = [m.end() for m in re.finditer(r"[^ ](?= {2,}|$)", header)]  # where each header ends
    for line in body:
        assert len(line) == len(header), (line, header)  # the last column is right-aligned
        for end in ends[2:]:  # every number column (after method and flag) ends where its header ends
            assert line[end - 1] != " " and (end == len(line) or line[end] == " "), (line, end)
    working = next(line for line in body if line.startswith("working"))
    assert working.count("±") == 8  # mean ± std over the seeds, except for the times and speed-ups


def test_short_times_are_medians_of_repeats():
    calls = []

    def sleeper(seconds):
        def fn(what):
            calls.append(what)
            time.sleep(seconds)
            return jax.numpy.zeros(())

        return fn

    _, t, _ = measure(sleeper(0.01), warm=True)
    timed = calls[1:]
    # the 2nd call takes >= 10 ms, so at most ceil(0.2 / 0.01) = 20 timed calls add up to >= 0.2 s
    assert calls[0] == "1st run, compiles" and timed[0] == "2nd run, timed" and set(timed[1:]) == {"repeat"}
    assert 0.2 / 0.02 <= len(timed) <= math.ceil(REPEAT_TOTAL_S / 0.01)
    assert 0.01 <= t < 0.03
    calls.clear()
    _, t, first = measure(sleeper(0.06), warm=True)
    assert len(calls) == 2 and t >= 0.06 and first >= 0.06  # long enough: no repeats
    calls.clear()
    measure(sleeper(0.001), warm=False)
    assert calls == ["timed"]  # a cold time is one call, compilation included


def test_changed_fraction_counts_differing_entries():
    rng = np.random.default_rng(0)
    before = {"a": rng.normal(size=(3, 4)), "b": {"c": rng.normal(size=5)}}
    after = {"a": before["a"].copy(), "b": {"c": before["b"]["c"].copy()}}
    after["a"][1, 2] += 1.0
    after["b"]["c"][[0, 4]] = 0.0
    assert changed_fraction(before, after) == pytest.approx(3 / 17)
    assert changed_fraction(before, before) == 0.0


def test_a_diverged_method_is_flagged_and_keeps_the_table_readable():
    rows = _rows()
    rows.append({"seed": 0, "method": "wild", "seconds": 0.1, "speedup": 2.0, "params_changed": 1.0,
                 "diverged": True})
    table = format_table(summarise(rows), scenario="class:3")
    line = next(line for line in table.splitlines() if line.startswith("wild"))
    assert "diverged" in line and line.split()[2] == "-"
    assert "diverged: the parameters became non-finite" in " ".join(table.split())
