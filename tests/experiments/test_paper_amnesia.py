"""The "amnesia" paper settings (Selective Amnesia's MNIST CVAE) end to end under their smoke params.

Both settings run once, in one module-scoped fixture (the second compiles nothing: same shapes, cached programs),
on the synthetic MNIST stand-in at the real 28x28 shapes. The numbers of the table are then recomputed in numpy
from the judge's log-probabilities on freshly drawn, 8-bit quantised samples.
"""

from __future__ import annotations

import functools

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxunlearn.data import load_dataset
from jaxunlearn.experiments import paper, paper_amnesia
from jaxunlearn.models.cvae import sample

pytestmark = pytest.mark.xdist_group("paper_amnesia")  # one worker: the module fixture runs once

NAMES = ("sa-mnist-forget0", "sa-mnist-forget1")


@pytest.fixture
def runs():
    """``{name: (setting, params, result, models, table, figures)}`` of both settings under ``--smoke``, computed
    once per process (a module fixture is torn down whenever an xdist worker's queue runs dry)."""
    return _runs()


@functools.cache
def _runs():
    settings = {s.name: s for s in paper_amnesia.SETTINGS}
    out = {}
    data = None
    for name in NAMES:
        setting = settings[name]
        params = {**setting.params, **setting.smoke}
        if data is None:  # both settings have the same smoke sizes and loader options
            data = load_dataset("synthetic_mnist", num_train=setting.smoke_sizes[0], num_test=setting.smoke_sizes[1],
                                seed=0, **paper_amnesia.data_options(params))
        lines = []
        result, models = paper_amnesia.run_with_models(setting, params, *data, progress=False, log=lines.append)
        assert lines and all(name in line for line in lines)
        out[name] = (setting, params, result, models, paper_amnesia.table(setting, params, result),
                     paper_amnesia.figures(setting, params, result))
    return out


def test_settings_registered():
    assert [s.name for s in paper_amnesia.SETTINGS] == list(NAMES)
    for s in paper_amnesia.SETTINGS:
        assert s.kind == "amnesia" and s.params["dataset"] == "mnist" and s.smoke_sizes == (400, 200)
        assert paper_amnesia.data_options(s.params) == {"preset": "vae"}
    assert [s.params["forget"] for s in paper_amnesia.SETTINGS] == [0, 1]
    p = paper_amnesia.SETTINGS[0].params  # the original's settings (original-algorithms.md section 5)
    assert (p["hidden"], p["z_dim"], p["cvae_steps"], p["cvae_lr"], p["cvae_batch"]) == ((512, 256), 8, 100_000, 1e-4,
                                                                                          256)
    assert (p["fisher_samples"], p["lmbda"], p["gamma"], p["forget_lr"], p["forget_batch"], p["forget_steps"],
            p["eval_samples"]) == (50_000, 100.0, 1.0, 1e-4, 256, 10_000, 1_000)


@pytest.mark.parametrize("name", NAMES)
def test_table_quotes_the_paper(runs, name):
    setting, params, result, _, table, _ = runs[name]
    rows = {line.split("  ")[0]: line for line in table.splitlines()
            if line.startswith(("original ", "forgotten (SA)"))}
    assert set(rows) == {"original", "forgotten (SA)"}
    quoted = {"sa-mnist-forget0": {"forgotten (SA)": ("2.1946", "0.0581")},
              "sa-mnist-forget1": {"original": ("0.0999", "0.9704"), "forgotten (SA)": ("2.2175", "0.2045")}}[name]
    for row, line in rows.items():
        cells = line.split()[-5:]  # H, paper H, p, paper p, remaining acc
        ours = result["before" if row == "original" else "after"]
        assert cells[0] == f"{ours['forget_entropy']:.4f}" and cells[2] == f"{ours['forget_prob']:.4f}"
        assert cells[4] == f"{100 * ours['remaining_accuracy']:.1f}"
        assert (cells[1], cells[3]) == quoted.get(row, (paper.NOT_QUOTED, paper.NOT_QUOTED))
    assert ("THIRD-PARTY" in table) == (name == "sa-mnist-forget1")
    assert f"Fisher {params['fisher_samples']} samples" in table and "seconds" in table
    json.dumps(result)  # JSON-able


@pytest.mark.parametrize("name", NAMES)
def test_forgets_the_named_digit(runs, name):
    """The method's state holds exactly the setting's digit forgotten: its surrogate labels are that digit and its
    replay draws from the other nine (``sample_sa_batch``'s masks)."""
    setting, _, result, models, _, _ = runs[name]
    f = setting.params["forget"]
    assert result["forget"] == f and result["forgotten_classes"] == [f]
    np.testing.assert_array_equal(np.asarray(models.state.forgotten), np.arange(10) == f)


@pytest.mark.parametrize("name", NAMES)
def test_numbers_recomputed_in_numpy(runs, name):
    """H, p(c_f) and the remaining digits' accuracy from the judge's log-probabilities on 8-bit samples, in numpy
    (samples of class c drawn with ``fold_in(keys['eval'], c)``, as :func:`jaxunlearn.amnesia.class_scores` does)."""
    setting, params, result, models, _, _ = runs[name]
    f, n = setting.params["forget"], params["eval_samples"]
    for which, weights in (("before", models.original), ("after", models.amnesiac)):
        acc = []
        for c in range(10):
            key = jax.random.fold_in(models.keys["eval"], c)
            x = np.asarray(sample(models.module, weights, key, jnp.full((n,), c)))
            q = np.floor(255.0 * np.clip(x, 0.0, 1.0) + 0.5) / 255.0  # the PNG round trip
            assert len(np.unique(q)) <= 256
            lp = np.asarray(models.judge(jnp.asarray(q, jnp.float32)), np.float64)
            prob = np.exp(lp - np.log(np.exp(lp).sum(-1, keepdims=True)))
            if c == f:
                entropy = np.mean(-np.sum(prob * np.log(prob), -1))
                np.testing.assert_allclose(result[which]["forget_entropy"], entropy, rtol=1e-4, atol=1e-5)
                np.testing.assert_allclose(result[which]["forget_prob"], prob[:, f].mean(), rtol=1e-4, atol=1e-6)
                assert 0.0 <= entropy <= np.log(10) + 1e-6
            else:
                acc.append(np.mean(prob.argmax(-1) == c))
        np.testing.assert_allclose(result[which]["remaining_accuracy"], np.mean(acc), atol=1e-6)


def test_figure_and_grids(runs):
    for name in NAMES:
        setting, params, result, models, _, figs = runs[name]
        assert list(figs) == ["samples_before_after.png"]
        assert figs["samples_before_after.png"][:8] == b"\x89PNG\r\n\x1a\n"
        k = params["grid_per_class"]
        grid = paper_amnesia.decode_grid(result, "forgotten")
        assert grid.shape == (10, k, 784)
        fresh = paper_amnesia.sample_grid(models.module, models.amnesiac, models.keys["grid"], k)
        np.testing.assert_allclose(grid, np.floor(255 * fresh + 0.5) / 255, atol=1.5 / 255)


def test_bad_params_are_named():
    setting = paper_amnesia.SETTINGS[0]
    data = (None, None)
    for key, value in (("forget", 10), ("forget_steps", 0), ("lmbda", -1.0), ("hidden", (512,))):
        with pytest.raises(ValueError, match=key):
            paper_amnesia.run(setting, {**setting.params, key: value}, *data, progress=False, log=print)
