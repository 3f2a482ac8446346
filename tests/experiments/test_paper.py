"""``jaxunlearn paper``: the registry of seed settings, their parameters, the command, and the classification
settings run end to end under ``--smoke`` (synthetic CIFAR of the real shapes, narrow models, one epoch).

The Bayesian and Selective Amnesia settings run end to end in their own modules (``test_paper_bayesian.py``,
``test_paper_amnesia.py``), which check their numbers against numpy.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from jaxunlearn.cli import main
from jaxunlearn.experiments import paper, paper_classification
from jaxunlearn.experiments.config import ConfigError


SETTINGS = paper.all_settings()
CLASSIFICATION = [s.name for s in paper_classification.SETTINGS]


def test_every_kind_registers_its_settings_once_with_quotes_it_can_place():
    assert {s.kind for s in SETTINGS.values()} == set(paper.KINDS)
    assert len(CLASSIFICATION) == 8  # {cifar100, cifar20} full class, cifar20 sub-class, cifar10 random x 2 models
    for name, s in SETTINGS.items():
        assert name == s.name and name == name.lower() and " " not in name
        assert set(s.smoke) <= set(s.params), name
        assert s.reference and s.title and "dataset" in s.params
        assert all(isinstance(v, str) for row in s.paper.values() for v in row.values()), name


def test_the_classification_settings_carry_the_originals_hyperparameters():
    by = {s.name: s.params for s in paper_classification.SETTINGS}
    # original-algorithms.md 3.2 (SSD) and 4.2 (JiT; ResNet-18 takes the VGG rows)
    assert by["cifar100-fullclass-resnet18"]["ssd.alpha"] == 10.0 and by["cifar100-fullclass-vit"]["ssd.alpha"] == 5.0
    assert by["cifar20-subclass-vit"]["ssd.alpha"] == 25.0 and by["cifar10-random-vit"]["ssd.batch_size"] == 128
    assert (by["cifar20-fullclass-vit"]["jit.sigma"], by["cifar20-fullclass-vit"]["jit.eta"]) == (0.8, 1.5)
    assert (by["cifar20-subclass-vit"]["jit.sigma"], by["cifar20-subclass-vit"]["jit.eta"]) == (1.5, 0.5)
    assert (by["cifar10-random-vit"]["jit.sigma"], by["cifar10-random-vit"]["jit.eta"]) == (0.5, 0.1)
    assert (by["cifar20-subclass-resnet18"]["jit.sigma"], by["cifar100-fullclass-resnet18"]["jit.sigma"]) == (0.01, 0.5)
    assert by["cifar100-fullclass-resnet18"]["forget"] == ("rocket", "mushroom", "baby", "lamp", "sea")
    assert by["cifar20-fullclass-vit"]["forget"] == ("vehicle2", "veg", "people", "electrical_devices",
                                                      "natural_scenes")
    assert by["cifar20-subclass-resnet18"]["forget"][0] == "rocket" and by["cifar10-random-vit"]["forget"] == (
        "0.00165",)
    assert [by[f"{d}-resnet18"]["epochs"] for d in ("cifar100-fullclass", "cifar20-fullclass", "cifar10-random")] == [
        200, 40, 20]
    assert by["cifar100-fullclass-resnet18"]["train.milestones"] == (60, 120, 160)
    for params in by.values():
        assert params["lfssd.alpha"] == params["ssd.alpha"] and params["ssd.lambda_"] == 1.0
        assert (params["train.name"], params["train.lr"], params["train.momentum"]) == ("sgd", 0.1, 0.9)


def test_params_are_split_into_the_comparison_config():
    s = SETTINGS["cifar20-subclass-vit"]
    params = paper.resolve_params(s, ["forget=rocket,sea", "jit.sigma=2", "model.depth=3", "seeds=0,1"])
    configs = paper_classification.configs(params, "cifar20")
    assert [label for label, _ in configs] == ["rocket", "sea"]
    config = configs[1][1]
    assert config.scenario == "subclass:sea" and config.seeds == (0, 1) and config.model == "vit"
    assert config.settings["jit"]["sigma"] == 2.0 and config.settings["ssd"]["alpha"] == 25.0
    assert config.model_options["depth"] == 3 and config.model_options["patch_size"] == 4
    assert config.optimizer["milestones"] == (15, 30, 35) and config.optimizer["name"] == "sgd"
    assert config.methods == ("original", "retrain", "ssd", "lfssd", "jit") and not config.extra_metrics


def test_resolve_params_types_and_errors():
    s = SETTINGS["cifar100-fullclass-resnet18"]
    params = paper.resolve_params(s, ["epochs=3", "model.stage_widths=8,16,32,64"], smoke=True,
                                  file_values={"seeds": [1, 2], "epochs": 5})
    assert params["epochs"] == 3 and params["seeds"] == (1, 2) and params["model.stage_widths"] == (8, 16, 32, 64)
    assert params["forget"] == ("rocket",) and params["warm_timing"] is False  # the smoke values
    with pytest.raises(ConfigError, match="no setting 'alpha'.*ssd.alpha"):
        paper.resolve_params(s, ["alpha=3"])
    with pytest.raises(ConfigError, match="epochs takes an integer"):
        paper.resolve_params(s, ["epochs=2.5"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        paper.resolve_params(s, ["epochs"])


def test_training_schedule_is_warm_up_then_step_decay():
    from jaxunlearn.experiments.registry import make_training_optimizer
    import jax.numpy as jnp

    opt = make_training_optimizer({"name": "sgd", "lr": 0.1, "milestones": (2, 4), "gamma": 0.2,
                                   "warmup_epochs": 1}, steps_per_epoch=3)
    state, p = opt.init(jnp.zeros(())), jnp.zeros(())
    rates = []
    for _ in range(15):
        update, state = opt.update(jnp.ones(()), state, p)
        rates.append(-float(update))
    epoch = np.arange(15) // 3  # PyTorch: WarmUpLR over epoch 0, then MultiStepLR(milestones=[2, 4], gamma=0.2)
    decays = (epoch >= 2).astype(int) + (epoch >= 4)
    expected = np.where(epoch == 0, 0.1 * (np.arange(15) + 1) / 3, 0.1 * 0.2**decays)
    np.testing.assert_allclose(rates, expected, rtol=1e-6)


def test_command_lists_prints_and_rejects(tmp_path, capsys):
    assert main(["paper", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in SETTINGS)
    assert main(["paper", "cifar10-random-vit", "--set", "seeds=3,4", "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert '"seeds" = [3, 4]' in printed and '"jit.eta" = 0.1' in printed
    config = tmp_path / "c.toml"
    config.write_text(printed)
    assert main(["paper", "cifar10-random-vit", "--config", str(config), "--set", "epochs=2", "--print-config"]) == 0
    again = capsys.readouterr().out
    assert '"seeds" = [3, 4]' in again and '"epochs" = 2' in again
    assert main(["paper", "no-such-setting"]) == 2
    assert "unknown paper setting 'no-such-setting'" in capsys.readouterr().err
    assert main(["paper", "cifar10-random-vit", "--set", "sigma=1", "--out", str(tmp_path)]) == 2
    assert "no setting 'sigma'" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "paper-cifar10-random-vit")


def test_a_missing_dataset_ends_with_a_message(tmp_path, capsys):
    code = main(["paper", "cifar10-random-vit", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path),
                 "--quiet", "--no-cache"])
    assert code == 2 and "error: cifar10-random-vit:" in capsys.readouterr().err


def test_every_classification_setting_names_forget_sets_its_data_has():
    from jaxunlearn.data import load_dataset
    from jaxunlearn.experiments.scenario import parse_scenario

    data = {d: load_dataset(f"synthetic_{d}", num_train=1000, num_test=200, seed=0)
            for d in ("cifar100", "cifar20", "cifar10")}
    for s in paper_classification.SETTINGS:
        train, test = data[s.params["dataset"]]
        for params in (s.params, paper.resolve_params(s, smoke=True)):
            for label, config in paper_classification.configs(params, s.params["dataset"]):
                split = parse_scenario(config.scenario, train, test, seed=0)
                assert split.sizes["forget_train"] > 0 and split.sizes["retain_train"] > 0, (s.name, label)
                if params["scenario"] != "random":  # a whole class (or CIFAR-100 class inside CIFAR-20) goes
                    forgotten = train.y if params["scenario"] == "class" else train.fine_y
                    assert len(set(forgotten[split.forget_train_idx].tolist())) == 1, (s.name, label)


def test_every_classification_setting_tables_its_rows_beside_the_papers_numbers():
    methods = ("original", "retrain", "ssd", "lfssd", "jit")
    for s in paper_classification.SETTINGS:
        params = paper.resolve_params(s, smoke=True)
        random = params["scenario"] == "random"
        result = {"forget": {label: [{"method": m, "acc_retain_test": 0.5 + 0.01 * i + 0.1 * j,
                                      ("acc_forget_train" if random else "acc_forget_test"): 0.25 + 0.01 * i,
                                      "mia": 0.125 + 0.01 * i, "seconds": 1.5 + i, "seeds": 1}
                                     for i, m in enumerate(methods)]
                             for j, label in enumerate(params["forget"])}}
        table = paper_classification.table(s, params, result)
        for cells in s.paper.values():
            for value in cells.values():
                assert value in table, s.name  # the quoted numbers stand beside ours
        assert s.reference[:40] in table.replace("\n", " "), s.name
        for j, label in enumerate(params["forget"]):
            for i, m in enumerate(methods):
                line = next(ln for ln in table.splitlines() if ln.startswith(f"{label} {m} "))
                assert f"{100 * (0.5 + 0.01 * i + 0.1 * j):.2f}" in line and f"{100 * (0.25 + 0.01 * i):.2f}" in line
                assert f"{100 * (0.125 + 0.01 * i):.2f}" in line, (s.name, line)


#: Three classification settings run end to end through ``jaxunlearn paper NAME --smoke`` in the test's process
#: (20-35 s each here, nearly all of it compiling the model's training, SSD, LFSSD, JiT and evaluation programs,
#: which depend on the number of classes and the split's sizes, so the settings share few of them). Together they
#: cover every scenario (full class, sub-class, random) and both models; the other five differ from these only in
#: their parameters and dataset, which the tests above check (their forget sets on their data, their split into
#: configs, their tables).
SMOKED = ["cifar20-fullclass-resnet18", "cifar20-subclass-vit", "cifar10-random-vit"]


@pytest.mark.slow
@pytest.mark.parametrize("name", SMOKED)
def test_smoke_run_end_to_end(name, tmp_path, capsys):
    s = SETTINGS[name]
    code = main(["paper", name, "--smoke", "--out", str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    folder = tmp_path / f"paper-{name}-smoke"
    table = (folder / "table.txt").read_text()
    assert table in out
    record = json.loads((folder / "result.json").read_text())
    assert record["smoke"] and record["params"]["epochs"] == 1
    summaries = record["result"]["forget"][s.smoke["forget"][0]]
    assert [r["method"] for r in summaries] == ["original", "retrain", "ssd", "lfssd", "jit"]
    for row in summaries:
        assert 0.0 <= row["acc_retain_test"] <= 1.0 and 0.0 <= row["mia"] <= 1.0
    for cells in s.paper.values():
        for value in cells.values():
            assert value in table  # the quoted numbers stand beside ours
    assert s.reference[:40] in table.replace("\n", " ")
    ssd = next(r for r in summaries if r["method"] == "ssd")
    line = next(ln for ln in table.splitlines() if ln.startswith(f"{s.smoke['forget'][0]} ssd "))
    assert f"{100 * ssd['acc_retain_test']:.2f}" in line  # the table prints the row it was given


@pytest.mark.parametrize("flags, added", [("", True), ("--xla_force_host_platform_device_count=8", True),
                                          ("--xla_backend_optimization_level=1", False),
                                          ("--xla_cpu_use_fusion_emitters=false", False)])
def test_smoke_command_compiles_at_o0_unless_the_users_flags_say_otherwise(flags, added, monkeypatch):
    from jaxunlearn import _entry, cli

    monkeypatch.setenv("XLA_FLAGS", flags)
    monkeypatch.setattr(cli, "main", lambda argv: 0)
    assert _entry.main(["paper", "cifar10-random-vit", "--smoke"]) == 0
    assert os.environ["XLA_FLAGS"] == (f"{flags} {_entry.SMOKE_XLA_FLAG}".strip() if added else flags)
    monkeypatch.setenv("XLA_FLAGS", flags)
    assert _entry.main(["paper", "cifar10-random-vit"]) == 0 and os.environ["XLA_FLAGS"] == flags
