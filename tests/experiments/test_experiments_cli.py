"""The main job end to end on digits (few epochs), scenario strings, the report, and the CLI's errors."""

import json
import os

import numpy as np
import pytest

from jaxunlearn import cli
from jaxunlearn.data import load_digits
from jaxunlearn.experiments import ForgettingConfig, format_table, parse_scenario, resolve_methods, run_seed, summarise


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_parse_scenarios(digits):
    train, test = digits
    full = parse_scenario("class:3", train, test)
    assert set(np.unique(full.forget_train.y)) == {3} and 3 not in set(full.retain_train.y)
    rnd = parse_scenario("random:50", train, test, seed=1)
    assert len(rnd.forget_train.y) == 50 and len(rnd.retain_train.y) == len(train.y) - 50
    frac = parse_scenario("random:0.1", train, test, seed=1)
    assert len(frac.forget_train.y) == pytest.approx(0.1 * len(train.y), abs=1)
    sub = parse_scenario("class_subset:0:20", train, test, seed=2)
    assert len(sub.forget_train.y) == 20 and set(np.unique(sub.forget_train.y)) == {0}
    for bad in ("class", "class:3:4", "random:x", "nonsense:1"):
        with pytest.raises(ValueError, match="scenario"):
            parse_scenario(bad, train, test)


def test_resolve_methods():
    assert resolve_methods("all")[:2] == ("original", "retrain")
    assert resolve_methods("ssd,jit") == ("original", "retrain", "ssd", "jit")
    with pytest.raises(ValueError, match="unknown method"):
        resolve_methods("ssd,magic")


def test_format_table_shows_mean_and_spread():
    rows = [{"seed": s, "method": "ssd", "acc_forget_train": v, "seconds": 1.0, "speedup": 2.0} for s, v in
            ((0, 0.1), (1, 0.3))]
    table = format_table(summarise(rows))
    assert "ssd" in table and "0.200±.100" in table


def _rows(methods):
    config = ForgettingConfig(scenario="class:3", methods=methods, seeds=(0,), epochs=30, warm_timing=False)
    return {r["method"]: r for r in run_seed(config, 0, progress=False, log=lambda m: None)}


@pytest.fixture(scope="module")
def ssd_and_jit_rows():
    return _rows(("ssd", "jit"))


def test_run_seed_ssd_forgets_a_class_and_retrain_is_the_reference(ssd_and_jit_rows):
    rows = ssd_and_jit_rows
    assert set(rows) == {"original", "retrain", "ssd", "jit"}
    assert rows["original"]["acc_forget_train"] > 0.9
    assert rows["retrain"]["acc_forget_train"] == 0.0 and rows["retrain"]["js_to_retrain"] == 0.0
    assert rows["ssd"]["acc_forget_train"] < 0.2          # the class is forgotten ...
    assert rows["ssd"]["acc_retain_test"] > rows["original"]["acc_retain_test"] - 0.1  # ... the rest kept
    assert rows["ssd"]["js_to_retrain"] < rows["original"]["js_to_retrain"]
    assert rows["ssd"]["seconds"] > 0


def test_a_methods_result_does_not_depend_on_the_other_methods_run(ssd_and_jit_rows):
    """Each method's key comes from its name, not its position: JiT alone == JiT after SSD (same seed)."""
    def metrics_of(row):
        return {k: v for k, v in row.items() if k not in ("seconds", "speedup")}

    assert metrics_of(_rows(("jit",))["jit"]) == metrics_of(ssd_and_jit_rows["jit"])


def test_cli_writes_table_json_csv_png(tmp_path, capsys):
    code = cli.main(["forget", "--methods", "ssd", "--seeds", "0", "--epochs", "3", "--quiet", "--cold-timing",
                     "--out", str(tmp_path)])
    assert code == 0
    out = capsys.readouterr().out
    assert "method" in out and "ssd" in out and "retrain" in out
    folder = tmp_path / "digits-class_3"
    result = json.loads((folder / "results.json").read_text())
    assert {r["method"] for r in result["rows"]} == {"original", "retrain", "ssd"}
    assert (folder / "summary.csv").read_text().startswith("method,")
    assert (folder / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert not [f for f in os.listdir(folder) if f.startswith(".tmp")]


def test_cli_errors_are_clear(capsys):
    assert cli.main(["forget", "--methods", "magic", "--quiet"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert cli.main(["forget", "--seeds", "a,b", "--quiet"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert cli.main(["forget", "--dataset", "mnist", "--data-dir", "/nonexistent", "--methods", "ssd",
                     "--quiet"]) == 2
    assert "mnist" in capsys.readouterr().err


def test_cli_runs_cifar20_subclass_through_tfds(tmp_path, capsys):
    """The CIFAR path (tfds loader, CIFAR-20 coarse labels, sub-class scenario) on tfds mock data, with a small MLP."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=400):
        code = cli.main(["forget", "--dataset", "cifar20", "--scenario", "subclass:rocket", "--model", "mlp",
                         "--methods", "ssd", "--seeds", "0", "--epochs", "1", "--download", "--cold-timing",
                         "--quiet", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "cifar20-subclass_rocket" / "results.json").read_text())
    assert {r["method"] for r in result["rows"]} == {"original", "retrain", "ssd"}
