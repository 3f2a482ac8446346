"""The main job end to end on digits (few epochs), scenario strings, the report, and the CLI's errors."""

import json
import os
import time

import numpy as np
import pytest

from jaxunlearn import cli
from jaxunlearn.data import load_digits
from jaxunlearn.experiments import (
    ForgettingConfig,
    format_table,
    parse_scenario,
    resolve_methods,
    run_seed,
    summarise,
)


pytestmark = pytest.mark.xdist_group("experiments_cli")  # one worker: the module fixtures run once


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


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """One model cache for the module: the original and reference are trained once."""
    from jaxunlearn.experiments import ModelCache

    return ModelCache(str(tmp_path_factory.mktemp("cache")))


def _rows(methods, cache, messages=None):
    config = ForgettingConfig(scenario="class:3", methods=methods, seeds=(0,), epochs=30, warm_timing=False)
    log = (lambda m: None) if messages is None else messages.append
    return {r["method"]: r for r in run_seed(config, 0, cache=cache, progress=False, log=log)}


@pytest.fixture(scope="module")
def ssd_and_jit_run(model_cache):
    messages = []
    return _rows(("ssd", "jit"), model_cache, messages), messages


@pytest.fixture(scope="module")
def ssd_and_jit_rows(ssd_and_jit_run):
    return ssd_and_jit_run[0]


def test_progress_is_shown_across_methods(ssd_and_jit_run):
    messages = ssd_and_jit_run[1]
    assert "[seed 0] [1/2] ssd ..." in messages and "[seed 0] [2/2] jit ..." in messages
    assert messages.index("[seed 0] [1/2] ssd ...") < messages.index("[seed 0] [2/2] jit ...")


def test_run_seed_ssd_forgets_a_class_and_retrain_is_the_reference(ssd_and_jit_rows):
    rows = ssd_and_jit_rows
    assert set(rows) == {"original", "retrain", "ssd", "jit"}
    assert rows["original"]["acc_forget_train"] > 0.9
    assert rows["retrain"]["acc_forget_train"] == 0.0 and rows["retrain"]["js_to_retrain"] == 0.0
    assert rows["ssd"]["acc_forget_train"] < 0.2          # the class is forgotten ...
    assert rows["ssd"]["acc_retain_test"] > rows["original"]["acc_retain_test"] - 0.1  # ... the rest kept
    assert rows["ssd"]["js_to_retrain"] < rows["original"]["js_to_retrain"]
    assert rows["ssd"]["seconds"] > 0


def test_a_methods_result_does_not_depend_on_the_other_methods_run(ssd_and_jit_rows, model_cache):
    """Each method's key comes from its name, not its position: JiT alone == JiT after SSD (same seed)."""
    from jaxunlearn.experiments import ModelCache

    def metrics_of(row):
        return {k: v for k, v in row.items() if k not in ("seconds", "speedup", "from_cache")}

    fresh = ModelCache(model_cache.root, reuse_rows=False)  # the cached models, JiT computed again
    assert metrics_of(_rows(("jit",), fresh)["jit"]) == metrics_of(ssd_and_jit_rows["jit"])


def test_cli_writes_table_json_csv_png(tmp_path, tmp_path_factory, capsys):
    cache = tmp_path_factory.getbasetemp() / "jaxunlearn-test-cache"  # the tiny run of test_cache and test_sweep
    code = cli.main(["forget", "--methods", "ssd", "--seeds", "0", "--epochs", "2", "--quiet", "--cold-timing",
                     "--out", str(tmp_path / "out"), "--cache-dir", str(cache), "--set", "ssd.alpha=8"])
    assert code == 0
    out = capsys.readouterr().out
    assert "method" in out and "ssd" in out and "retrain" in out
    folder = tmp_path / "out" / "digits-class_3"
    result = json.loads((folder / "results.json").read_text())
    assert {r["method"] for r in result["rows"]} == {"original", "retrain", "ssd"}
    # the resolved configuration is recorded, and config.toml runs the same comparison
    assert result["config"]["method_settings"] == {"ssd": {"alpha": 8.0, "lambda_": 1.0, "batch_size": 64}}
    assert result["config"]["settings"] == {"ssd": {"alpha": 8}}
    assert cli.main(["forget", "--config", str(folder / "config.toml"), "--print-config"]) == 0
    assert capsys.readouterr().out == (folder / "config.toml").read_text()
    assert (folder / "summary.csv").read_text().startswith("method,")
    assert (folder / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    assert not [f for f in os.listdir(folder) if f.startswith(".tmp")]
    # one whole run: the manifest (written last) lists the files, and the JSON is strict
    from jaxunlearn.io import verify_folder

    manifest = verify_folder(folder)
    assert set(manifest["files"]) == {"results.json", "summary.csv", "comparison.png", "config.toml"}
    result = _strict_loads((folder / "results.json").read_text())  # "original" has speedup NaN: written null
    assert result["run_id"] == manifest["run_id"]
    assert next(r for r in result["rows"] if r["method"] == "original")["speedup"] is None
    assert [e for e in os.listdir(tmp_path / "out") if e.startswith(".")] == []


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
                         "--quiet", "--no-cache", "--out", str(tmp_path)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "cifar20-subclass_rocket" / "results.json").read_text())
    assert {r["method"] for r in result["rows"]} == {"original", "retrain", "ssd"}


# ---- "nothing silently wrong": every argument checked before any training ------------------------------

def _strict_loads(text):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the command gets as far as loading data or training."""
    from jaxunlearn import experiments

    def boom(*args, **kwargs):
        raise AssertionError("the command started a run before rejecting its arguments")

    monkeypatch.setattr(experiments, "run_forgetting", boom)


@pytest.mark.parametrize("args,needle", [
    (["--seeds", ","], "--seeds"),
    (["--seeds", ""], "--seeds"),
    (["--seeds", "0,,1"], "--seeds"),
    (["--seeds", "-1"], "--seeds"),
    (["--seeds", "0,0"], "twice"),
    (["--seeds", "1.5"], "--seeds"),
    (["--lr", "0"], "--lr"),
    (["--lr=-1e-3"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size=-8"], "--batch-size"),
    (["--methods", "ssd,magic"], "unknown method"),
    (["--methods", ","], "--methods is empty"),
    (["--dataset", "imagenet"], "unknown dataset"),
    (["--model", "resnet50"], "unknown model"),
    (["--scenario", "nonsense:1"], "cannot read scenario"),
    (["--scenario", "class:10"], "out of range"),
    (["--scenario", "random:5000"], "num_forget"),
    (["--scenario", "class_subset:3:1000"], "num_forget"),
    (["--scenario", "subclass:rocket"], "fine labels"),
    (["--dataset", "cifar20", "--scenario", "subclass:rockt"], "rockt"),
    (["--dataset", "cifar10", "--scenario", "class:10"], "out of range"),
    (["--dataset", "mnist", "--scenario", "random:60000"], "num_forget"),
])
def test_cli_rejects_bad_arguments_before_training(args, needle, tmp_path, capsys, no_training):
    start = time.perf_counter()
    code = cli.main(["forget", "--quiet", "--out", str(tmp_path / "out"), *args])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err
    assert elapsed < 20.0
    assert not (tmp_path / "out").exists()


def test_cli_accepts_valid_scenarios_of_every_dataset(tmp_path, capsys, monkeypatch):
    """The cheap scenario check knows each dataset's classes and sizes: valid strings pass it."""
    ok = [("digits", "class_subset:0:100"), ("mnist", "class_subset:1:6500"), ("mnist", "random:0.5"),
          ("cifar100", "class:rocket"), ("cifar20", "subclass:69"), ("cifar20", "class:vehicle2"),
          ("cifar100", "random:0.00165"), ("fashion_mnist", "class:9")]
    for dataset, scenario in ok:
        ns = cli.argparse.Namespace(dataset=dataset, scenario=scenario, methods="ssd", seeds="0,1", model=None,
                                    epochs=1, batch_size=8, lr=1e-3, data_dir=None, download=False,
                                    out=str(tmp_path), cold_timing=False, quiet=True)
        checked = cli.validate_forget_args(ns)
        assert checked["dataset"] == dataset and checked["seeds"] == (0, 1)


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_cli_rejects_an_output_folder_it_cannot_write(where, tmp_path, capsys, no_training):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "sub"
    assert cli.main(["forget", "--quiet", "--methods", "ssd", "--seeds", "0", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "regular file" in err and err.count("\n") == 1
    blocker2 = tmp_path / "out2"
    blocker2.mkdir()
    (blocker2 / "digits-class_3").write_text("a file where the results folder goes")
    assert cli.main(["forget", "--quiet", "--methods", "ssd", "--seeds", "0", "--out", str(blocker2)]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_cli_unwritable_output_folder(tmp_path, capsys, monkeypatch, no_training):
    from jaxunlearn import io as jio

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(jio.tempfile, "mkstemp", denied)
    assert cli.main(["forget", "--quiet", "--methods", "ssd", "--seeds", "0", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "Permission denied" in err


def test_empty_seeds_never_overwrite_good_results(tmp_path, capsys, no_training):
    folder = tmp_path / "digits-class_3"
    folder.mkdir()
    (folder / "results.json").write_text('{"good": true}')
    assert cli.main(["forget", "--seeds", ",", "--quiet", "--out", str(tmp_path)]) == 2
    assert (folder / "results.json").read_text() == '{"good": true}'


def test_argparse_errors_return_2_without_raising(capsys):
    assert cli.main(["forget", "--epochs", "many"]) == 2
    assert "invalid int value" in capsys.readouterr().err


# ---- the results folder --------------------------------------------------------------------------------

def _summary_rows():
    rows = [{"seed": s, "method": m, "seconds": t, "speedup": (1.0 / t if t else float("nan")),
             "acc_forget_train": a} for s in (0, 1) for m, t, a in (("original", 0.0, 1.0), ("ssd", 0.5, 0.1))]
    return rows, summarise(rows)


def test_write_results_killed_at_the_second_file_keeps_the_previous_run(tmp_path, monkeypatch):
    from jaxunlearn import io as jio
    from jaxunlearn.experiments import write_results

    rows, summaries = _summary_rows()
    folder = tmp_path / "digits-class_3"
    write_results(str(folder), {"title": "old"}, rows, summaries, run_id="20000101T000000Z-1-old")
    before = {f: (folder / f).read_bytes() for f in os.listdir(folder)}
    real, calls = jio._write_file, []

    def second_fails(path, payload):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while writing summary.csv
        real(path, payload)

    monkeypatch.setattr(jio, "_write_file", second_fails)
    with pytest.raises(KeyboardInterrupt):
        write_results(str(folder), {"title": "new"}, rows[:2], summarise(rows[:2]))
    assert {f: (folder / f).read_bytes() for f in os.listdir(folder)} == before
    assert jio.verify_folder(folder)["run_id"] == "20000101T000000Z-1-old"
    assert [e for e in os.listdir(tmp_path) if e.startswith(".")] == []
    assert not [p for p in tmp_path.rglob("*.json") if p.name.startswith(".")]


def test_cli_refuses_before_training_to_replace_a_folder_with_foreign_files(tmp_path, capsys, no_training):
    folder = tmp_path / "digits-class_3"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    (folder / "notes.txt").write_text("mine")
    assert cli.main(["forget", "--quiet", "--methods", "ssd", "--seeds", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "notes.txt" in err and err.count("\n") == 1


@pytest.mark.parametrize("bad", [dict(seeds=()), dict(seeds=(0, 0)), dict(seeds=(-1,)), dict(epochs=0),
                                 dict(batch_size=0), dict(learning_rate=-1e-3), dict(methods=("magic",))])
def test_config_rejects_what_would_train_nothing_or_wrongly(bad):
    with pytest.raises(ValueError):
        ForgettingConfig(**bad)
