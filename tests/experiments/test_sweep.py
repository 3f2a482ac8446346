"""``jaxunlearn sweep``: grids parsed and checked before training, the original and reference trained once for
every point, a table, a trade-off PNG and the same numbers as ``forget`` at the same settings."""

import itertools
import json

import pytest

from jaxunlearn import cli
from jaxunlearn.experiments import classification
from jaxunlearn.experiments.config import ConfigError
from jaxunlearn.experiments.registry import default_settings
from jaxunlearn.experiments.sweep import grid_points, parse_grid
from jaxunlearn.io import verify_folder

SETTINGS = {m: default_settings(m) for m in ("ssd", "jit", "finetune")}


def test_grids_parse_and_multiply_per_method():
    grids = [parse_grid("ssd.alpha=1,3"), parse_grid("jit.sigma=0.1,0.5"), parse_grid("ssd.lambda_=0.5,1,2"),
             parse_grid("finetune.optimizer.lr=0.01")]
    assert grids[0].values == (1, 3) and grids[3].path == ("optimizer", "lr")
    points = grid_points(grids, SETTINGS)
    assert list(points) == ["ssd", "jit", "finetune"]
    expected = [(a, lam) for a, lam in itertools.product((1, 3), (0.5, 1, 2))]
    assert [(p.settings["alpha"], p.settings["lambda_"]) for p in points["ssd"]] == expected
    assert points["ssd"][1].label == "alpha=1, lambda_=1" and points["ssd"][1].settings["batch_size"] == 64
    assert points["finetune"][0].settings["optimizer"] == {**SETTINGS["finetune"]["optimizer"], "lr": 0.01}
    assert all(isinstance(p.settings["alpha"], float) for p in points["ssd"])  # converted to the default's type
    for text, needle in (("ssd.alpha=", "comma-separated"), ("ssd.alpha=1,1", "twice"), ("ssd=1", "METHOD.KEY")):
        with pytest.raises(ConfigError, match=needle):
            parse_grid(text)
    with pytest.raises(ConfigError, match="alpha, lambda_, batch_size"):
        grid_points([parse_grid("ssd.alpah=1")], SETTINGS)
    with pytest.raises(ConfigError, match="twice"):
        grid_points([parse_grid("ssd.alpha=1"), parse_grid("ssd.alpha=2")], SETTINGS)


def test_bad_grids_exit_2_before_training(tmp_path, capsys, monkeypatch):
    from jaxunlearn import experiments

    monkeypatch.setattr(experiments, "run_sweep", lambda *a, **k: pytest.fail("the sweep started"))
    for grid, needle in (("ssd.alpha=1,-1", "ssd at alpha=-1"), ("magic.x=1", "'magic'"),
                         ("jit.sigma=a,b", "jit.sigma")):
        assert cli.main(["sweep", "--grid", grid, "--quiet", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    assert cli.main(["sweep", "--quiet"]) == 2  # --grid is required
    assert "--grid" in capsys.readouterr().err


pytestmark = pytest.mark.xdist_group("sweep")  # one worker: the module fixtures run once


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("sweep")
    calls = []
    real = classification.train_classifier
    mp = pytest.MonkeyPatch()
    mp.setattr(classification, "train_classifier", lambda *a, **k: calls.append(k["desc"]) or real(*a, **k))
    cache = tmp_path_factory.getbasetemp() / "jaxunlearn-test-cache"  # shared with test_cache's tiny run
    try:
        code = cli.main(["sweep", "--grid", "ssd.alpha=1,10", "--seeds", "0", "--epochs", "2", "--cold-timing",
                         "--quiet", "--out", str(base), "--cache-dir", str(cache)])
    finally:
        mp.undo()
    return {"base": base, "code": code, "trained": calls}


def test_sweep_trains_the_shared_models_once_and_writes_table_plot_and_config(sweep_run):
    assert sweep_run["code"] == 0
    # the original and the reference are trained at most once for both points (not at all when cached)
    trained = sweep_run["trained"]
    assert len(trained) == len(set(trained)) and set(trained) <= {"seed 0: original", "seed 0: retrain (timed)"}
    folder = sweep_run["base"] / "digits-class_3-sweep"
    assert set(verify_folder(folder)["files"]) == {"results.json", "sweep.csv", "tradeoff.png", "config.toml"}
    assert (folder / "tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((folder / "results.json").read_text())
    rows = {r["method"]: r for r in result["rows"]}
    assert list(rows) == ["original", "retrain", "ssd alpha=1", "ssd alpha=10"]
    assert result["config"]["grid"] == {"ssd": ["alpha=1", "alpha=10"]}
    assert "swept: ssd at alpha=1; alpha=10" in (folder / "config.toml").read_text()
    # SSD dampens the parameters whose forget importance exceeds alpha times their full-data importance:
    # a smaller alpha selects a superset, so it changes more parameters
    assert rows["ssd alpha=1"]["params_changed"] > rows["ssd alpha=10"]["params_changed"] > 0
    assert rows["ssd alpha=1"]["swept"] == "ssd" and rows["ssd alpha=1"]["setting"] == "alpha=1"
