"""The "bayesian" paper settings (BIF Figure 1 and ICLR'22 MCMC unlearning, Bayesian LeNet-5 at 32x32) under smoke.

Each setting runs once (module-scoped, on the synthetic Fashion-MNIST stand-in at the real 32x32 shapes); the
other tests reuse its compiled programs (the module's Setup cache): the MNIST run and the independent check, which
recomputes the errors, the L1 differences and the attack in numpy from the returned probabilities and the
removal from the returned order.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxunlearn.data import load_dataset
from jaxunlearn.experiments import paper, paper_bayesian

pytestmark = pytest.mark.xdist_group("paper_bayesian")  # one worker: the module fixture runs once

NAMES = ("bif-vi-fashion_mnist", "bif-sgld-fashion_mnist", "bif-sghmc-fashion_mnist", "mcmc-sgld-fashion_mnist")
SETTINGS = {s.name: s for s in paper_bayesian.SETTINGS}


def _smoke(setting, **overrides):
    """The setting's params under ``--smoke`` and its synthetic data, as the CLI builds them."""
    params = {**setting.params, **setting.smoke, **overrides}
    data = load_dataset("synthetic_" + params["dataset"], num_train=setting.smoke_sizes[0],
                        num_test=setting.smoke_sizes[1], seed=0, **paper_bayesian.data_options(params))
    return params, data


#: ``{name: (params, result, table, figures, log lines)}`` of the settings run so far in this process (a module
#: fixture would be torn down whenever an xdist worker's queue runs dry).
_RUNS: dict = {}


@pytest.fixture
def runs():
    """Each setting's smoke run, computed on first use."""
    cache = _RUNS

    def get(name):
        if name not in cache:
            setting = SETTINGS[name]
            params, (train, test) = _smoke(setting)
            lines = []
            result = paper_bayesian.run(setting, params, train, test, progress=False, log=lines.append)
            cache[name] = (params, result, paper_bayesian.table(setting, params, result),
                           paper_bayesian.figures(setting, params, result), lines)
        return cache[name]

    return get


def test_settings_registered_with_the_originals_hyperparameters():
    assert tuple(SETTINGS) == NAMES
    for s in paper_bayesian.SETTINGS:
        assert s.kind == "bayesian" and s.params["dataset"] == "fashion_mnist" and s.params["model"] == "lenet"
        assert paper_bayesian.data_options(s.params) == {"preset": "lenet"} and s.params["seeds"] == (0,)
        assert s.params["batch_size"] == 128 and s.params["rm_bs"] == 64 and s.params["iter_T"] == 64
        assert s.params["steps"] == 10000 and s.smoke["steps"] == 40 and s.smoke["iter_T"] == 4
        assert max(s.smoke["sizes"]) <= s.smoke_sizes[0] // 10  # balanced synthetic classes: 40 of class 0
        assert set(s.smoke) <= set(s.params)
        assert any("5 seeds" in n for n in s.notes)
    vi, sgld, sghmc, iclr = (SETTINGS[n].params for n in NAMES)  # original-algorithms.md 1.6 and 2.2
    assert vi["sizes"] == sgld["sizes"] == (1000, 2000, 3000, 4000, 5000, 6000) and iclr["sizes"] == (4000, 6000)
    assert (vi["lr"], vi["decay_rate"], vi["decay_every"], vi["prior"], vi["scaling0"], vi["bbp_T"]) == (
        0.5, 0.1, 4000, 0.15, 0.1, 5)
    assert (sgld["lr"], sgld["decay_exp"], sgld["prior"], sgld["scaling0"], sgld["samp_T"]) == (0.5, -0.5, 0.15,
                                                                                               0.005, 5)
    assert (sghmc["alpha"], sghmc["scaling0"], sghmc["samp_T"]) == (0.4, 0.05, 5)
    assert not sgld["rescale_lr"] and not sgld["eval_step"] and iclr["rescale_lr"] and iclr["eval_step"]
    assert (iclr["explore_lr"], iclr["momentum"], iclr["explore_steps"], iclr["lr"], iclr["decay_exp"],
            iclr["prior"], iclr["scaling0"], iclr["samp_T"]) == (0.01, 0.9, 1000, 0.01, -0.5005, 0.1, 0.05, 1)
    assert SETTINGS["bif-vi-fashion_mnist"].paper["5000 processed"] == {"err S_f": "~54"}
    assert SETTINGS["mcmc-sgld-fashion_mnist"].paper == {}
    assert "dTqOcTUOQO" in SETTINGS["mcmc-sgld-fashion_mnist"].reference
    assert any("pretraining" in n for n in SETTINGS["mcmc-sgld-fashion_mnist"].notes)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_table_and_figure(runs, name):
    setting = SETTINGS[name]
    params, result, table, figures, lines = runs(name)
    json.dumps(result)  # JSON-able
    assert result["setting"] == name and result["method"] == name.split("-")[1]
    assert (result["num_train"], result["num_test"]) == setting.smoke_sizes and result["seeds"] == [0]
    assert lines and all(line.startswith(f"[{result['method']} seed 0]") for line in lines)
    summary = {(e["k"], e["model"]): e for e in result["summary"]}
    assert set(summary) == {(k, m) for k in params["sizes"] for m in paper_bayesian.MODELS}
    for e in summary.values():
        assert all(0.0 <= e[m] <= 100.0 for m in ("err_forget", "err_remain", "err_test", "mia"))
        assert 0.0 <= e["l1_test"] <= 2.0 and e["seconds"] > 0.0 and e["err_test_std"] == 0.0
    for k in params["sizes"]:
        assert summary[k, "target"]["l1_test"] == summary[k, "target"]["l1_forget"] == 0.0
        assert summary[k, "origin"]["seconds"] == result["runs"][0]["train_seconds"]

    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("k "))
    assert "err S_f (≈target)" in header and "MIA ↑" in header and "L1 test ↓" in header and "seconds" in header
    assert f"paper columns: {setting.reference}" in table and all(f"note: {n}" in table for n in setting.notes)
    if setting.paper:
        assert "paper err S_f" in header and "paper err S_r" not in header
        for row, cells in setting.paper.items():  # quoted rows show even when this run's sizes differ
            line = next(line for line in lines if line.split()[:2] == row.split())
            assert cells["err S_f"] in line.split() and "not run" in line
    else:
        assert "paper" not in header
    assert list(figures) == ["errors.png"] and figures["errors.png"][:8] == b"\x89PNG\r\n\x1a\n"


def _brute_force_attack(members, nonmembers, forget):
    """% of ``forget`` below the threshold maximising (TPR + TNR) / 2 over every candidate, smallest on ties."""
    best, tau = -1.0, None
    for t in np.sort(np.concatenate([members, nonmembers])):
        acc = 0.5 * (np.mean(members >= t) + np.mean(nonmembers < t))
        if acc > best:
            best, tau = acc, t
    return 100.0 * np.mean(forget < tau)


def test_numbers_match_a_numpy_recomputation_and_the_removal_is_the_first_k_of_the_order(runs):
    setting = SETTINGS["bif-sgld-fashion_mnist"]
    runs(setting.name)  # compiled programs of this configuration
    params, (train, test) = _smoke(setting)
    out = paper_bayesian.run_seed("sgld", params, train, test, 3, log=lambda _: None, keep_predictions=True)
    y, y_test = np.asarray(train.y), np.asarray(test.y)
    order = np.asarray(out["order"])
    class0 = np.flatnonzero(y == 0)
    assert len(order) == max(params["sizes"]) and len(set(order.tolist())) == len(order)
    assert set(order.tolist()) <= set(class0.tolist())
    assert np.array_equal(order, paper_bayesian.removal_order(y, 3)[:len(order)])
    for row in out["rows"]:
        k = row["k"]
        forget = set(order[:k].tolist())
        remain = np.array([i not in forget for i in range(len(y))])
        target_test = row["target"]["probs_test"]
        for model in paper_bayesian.MODELS:
            m = row[model]
            p, q = m["probs_train"], m["probs_test"]
            wrong = p.argmax(1) != y
            np.testing.assert_allclose(m["err_forget"], 100 * np.mean(wrong[sorted(forget)]), atol=1e-4)
            np.testing.assert_allclose(m["err_remain"], 100 * np.mean(wrong[remain]), atol=1e-4)
            np.testing.assert_allclose(m["err_test"], 100 * np.mean(q.argmax(1) != y_test), atol=1e-4)
            np.testing.assert_allclose(m["l1_test"], np.mean(np.abs(q - target_test).sum(1)), atol=1e-5)
            conf = p[np.arange(len(y)), y]  # no evaluation step in BIF: the stored model is the evaluated one
            attack = _brute_force_attack(conf[remain], q[np.arange(len(y_test)), y_test], conf[sorted(forget)])
            np.testing.assert_allclose(m["mia"], attack, atol=1e-4)
        for a in ("probs_train", "probs_test"):  # the origin is the same model at every k
            np.testing.assert_array_equal(row["origin"][a], out["rows"][0]["origin"][a])


def test_removal_chunks_remove_the_first_k_once_each_in_rm_bs_requests():
    order = np.random.default_rng(0).permutation(np.arange(500, 650))
    for k, rm_bs in ((1, 1), (64, 16), (100, 64), (150, 64), (150, 7)):
        chunks = paper_bayesian.removal_chunks(order, k, rm_bs)
        removed = [i for c in chunks for i in c.tolist()]
        assert len(removed) == len(set(removed)) == k and set(removed) == set(order[:k].tolist())
        assert removed == order[:k].tolist()  # in the fixed order
        assert all(len(c) == rm_bs for c in chunks[:-1]) and 1 <= len(chunks[-1]) <= rm_bs
        assert len(chunks) == -(-k // rm_bs)
    for k in (0, 151, 2.0, True):
        with pytest.raises(ValueError, match="sizes"):
            paper_bayesian.removal_chunks(order, k, 16)
    with pytest.raises(ValueError, match="rm_bs"):
        paper_bayesian.removal_chunks(order, 10, 0)
    labels = np.array([0, 1, 0, 2, 0, 0])
    assert sorted(paper_bayesian.removal_order(labels, 1).tolist()) == [0, 2, 4, 5]
    with pytest.raises(ValueError, match="forget_class=3"):
        paper_bayesian.removal_order(labels, 1, forget_class=3)


def test_mnist_runs_through_the_same_compiled_programs(runs):
    setting = SETTINGS["bif-sgld-fashion_mnist"]
    runs(setting.name)
    params, (train, test) = _smoke(setting, dataset="mnist")
    assert train.name == "synthetic_mnist/train" and train.x.shape[1:] == (32, 32, 1)
    hits = paper_bayesian._cached_setup.cache_info().hits
    result = paper_bayesian.run(setting, params, train, test, progress=False, log=lambda _: None)
    assert paper_bayesian._cached_setup.cache_info().hits == hits + 1  # the Fashion-MNIST run's Setup
    assert result["dataset"] == "mnist" and len(result["summary"]) == 3 * len(params["sizes"])
    assert "mnist, 400 training / 100 test examples" in paper_bayesian.table(setting, params, result)


def test_configuration_errors_are_named():
    setting = SETTINGS["bif-vi-fashion_mnist"]
    params = {**setting.params, **setting.smoke}
    train, test = load_dataset("synthetic_fashion_mnist", num_train=40, num_test=10, seed=0, preset="lenet")
    with pytest.raises(ValueError, match="eval_step"):
        paper_bayesian.run_seed("vi", {**params, "eval_step": True}, train, test, 0)
    with pytest.raises(ValueError, match="method must be one of"):
        paper_bayesian.setup("hmc", params, 40, 10)
    with pytest.raises(ValueError, match="decay_exp"):
        paper_bayesian.setup("sgld", params, 40, 10)
    with pytest.raises(ValueError, match="sizes"):
        paper_bayesian.run_seed("vi", {**params, "sizes": (5,)}, train, test, 0)  # 4 examples of class 0
    assert paper.kind_module("bayesian") is paper_bayesian
