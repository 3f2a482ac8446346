"""Settings as data: defaults < --config FILE < flags and --set, --print-config as a config file that reproduces
the run, every key checked before any training, and optimizers built as PyTorch defines them."""

import sys

import numpy as np
import optax
import pytest

from jaxunlearn import cli
from jaxunlearn.experiments import config as cfg
from jaxunlearn.experiments.registry import COMPARED, SETTINGS, default_settings, make_optimizer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the command gets as far as loading data or training."""
    from jaxunlearn import experiments

    def boom(*args, **kwargs):
        raise AssertionError("the command started a run")

    monkeypatch.setattr(experiments, "run_forgetting", boom)
    monkeypatch.setattr(experiments, "run_sweep", boom)


def _printed(capsys, *args):
    assert cli.main(["forget", "--print-config", *args]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_values_are_read_as_toml_scalars():
    assert cfg.parse_value("5") == 5 and isinstance(cfg.parse_value("5"), int)
    assert cfg.parse_value("0.3") == 0.3 and cfg.parse_value("1e-3") == 1e-3
    assert cfg.parse_value("true") is True and cfg.parse_value('"cg"') == "cg"
    assert cfg.parse_value("lissa") == "lissa"  # not TOML: taken as the bare string


def test_precedence_defaults_file_flags_and_sets(tmp_path, capsys, no_training):
    config = tmp_path / "run.toml"
    config.write_text('epochs = 7\nseeds = [1, 2]\nmethods = ["ssd", "finetune"]\n\n[ssd]\nalpha = 5\nlambda_ = 2\n\n'
                      '[finetune]\noptimizer = { lr = 0.01 }\nnum_epochs = 3\n')
    text = _printed(capsys, "--config", str(config), "--set", "ssd.alpha=7", "--epochs", "9", "--out", str(tmp_path),
                    "--cache-dir", str(tmp_path / "cache"))
    resolved = tomllib.loads(text)
    assert resolved["epochs"] == 9                      # the flag beats the file
    assert resolved["seeds"] == [1, 2] and resolved["methods"] == ["ssd", "finetune"]  # the file beats the defaults
    assert resolved["batch_size"] == 64 and resolved["model"] == "mlp"                  # defaults
    assert resolved["ssd"] == {"alpha": 7.0, "lambda_": 2.0, "batch_size": 64}           # --set beats the file
    expected_finetune = default_settings("finetune")
    expected_finetune["optimizer"]["lr"] = 0.01  # the file changes one key of the optimizer, the others stay
    expected_finetune["num_epochs"] = 3
    assert {**resolved["finetune"], "optimizer": {**resolved["finetune"]["optimizer"], "clip_norm": None}} == \
        expected_finetune
    assert set(resolved) & set(COMPARED) == {"ssd", "finetune"}  # only the methods that run
    # the printed configuration is a config file that reproduces itself
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert _printed(capsys, "--config", str(again)) == text


def test_profiles_give_the_originals_on_cifar_and_tuned_values_on_digits(capsys, no_training, tmp_path):
    common = ("--methods", "lfssd,jit,amnesiac", "--out", str(tmp_path), "--cache-dir", str(tmp_path))
    digits = tomllib.loads(_printed(capsys, *common))
    cifar = tomllib.loads(_printed(capsys, "--dataset", "cifar10", "--scenario", "class:0", *common))
    assert cifar["lfssd"]["alpha"] == 10.0 and digits["lfssd"]["alpha"] == SETTINGS["lfssd"]["digits"]["alpha"] != 10
    assert (cifar["jit"]["sigma"], cifar["jit"]["eta"]) == (0.5, 3e-4)
    assert cifar["amnesiac"]["optimizer"]["lr"] == 1e-4 and digits["amnesiac"]["optimizer"]["lr"] == 3e-3
    assert cifar["model"] == "resnet18"


def test_switching_the_optimizer_starts_from_its_defaults(capsys, no_training, tmp_path):
    resolved = tomllib.loads(_printed(capsys, "--methods", "finetune", "--set", "finetune.optimizer.name=adam",
                                      "--set", "finetune.optimizer.b2=0.99", "--out", str(tmp_path)))
    assert resolved["finetune"]["optimizer"] == {"name": "adam", "lr": 0.02, "b1": 0.9, "b2": 0.99,
                                                 "weight_decay": 0.0, "clip_norm": "none"}
    resolved = tomllib.loads(_printed(capsys, "--methods", "scrub", "--set", "scrub.optimizer.clip_norm=none",
                                      "--out", str(tmp_path)))
    assert resolved["scrub"]["optimizer"]["clip_norm"] == "none" and resolved["scrub"]["optimizer"]["momentum"] == 0.9


@pytest.mark.parametrize("args,needles", [
    (["--set", "ssd.alpah=3"], ["'ssd.alpah'", "alpha, lambda_, batch_size"]),
    (["--set", "magic.alpha=3"], ["'magic'", "finetune", "jit"]),
    (["--set", "ssd.alpha=abc"], ["ssd.alpha", "number"]),
    (["--set", "ssd.batch_size=2.5"], ["ssd.batch_size", "integer"]),
    (["--set", "ssd.alpha=-1"], ["ssd", "alpha"]),                 # the method's own check, before training
    (["--set", "influence.solver=newton"], ["influence", "solver"]),
    (["--set", "finetune.optimizer.momentm=0.5"], ["optimizer.momentum", "optimizer.lr"]),
    (["--set", "finetune.optimizer.name=adam", "--set", "finetune.optimizer.momentum=0.5"], ["optimizer.b1"]),
    (["--set", "finetune.optimizer=3"], ["finetune.optimizer is a table"]),
    (["--set", "ssd.alpha"], ["METHOD.KEY=VALUE"]),
    (["--set", "epochs=3"], ["METHOD.KEY=VALUE", "--epochs"]),
])
def test_bad_settings_exit_2_naming_the_valid_keys(args, needles, tmp_path, capsys, no_training):
    assert cli.main(["forget", "--quiet", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text,needle", [
    ("epochs = '5'\n", "epochs must be an integer"),
    ("seeds = [0, true]\n", "seeds"),
    ("colour = 'blue'\n", "unknown key 'colour'"),
    ("[ssd]\nalpah = 1\n", "'ssd.alpah'"),
    ("ssd = 3\n", "[ssd] must be a table"),
    ("epochs = \n", "not valid TOML"),
])
def test_bad_config_files_exit_2(text, needle, tmp_path, capsys, no_training):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert cli.main(["forget", "--config", str(path), "--quiet", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and needle in err and err.count("\n") == 1, err
    assert cli.main(["forget", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def _torch_sgd_reference(theta, grads, lr, momentum, weight_decay, clip_norm):
    """PyTorch: clip_grad_norm_(c) on the loss gradient, then SGD(lr, momentum, weight_decay), dampening 0."""
    theta, buf = theta.copy(), None
    for g in grads:
        if clip_norm is not None:
            g = g * min(1.0, clip_norm / (np.linalg.norm(g) + 1e-6))
        d = g + weight_decay * theta
        buf = d if buf is None else momentum * buf + d
        theta = theta - lr * buf
    return theta


def _torch_adam_reference(theta, grads, lr, b1, b2, weight_decay, eps=1e-8):
    """PyTorch Adam with coupled weight decay (L2 added to the gradient)."""
    theta, m, v = theta.copy(), np.zeros_like(theta), np.zeros_like(theta)
    for t, g in enumerate(grads, 1):
        d = g + weight_decay * theta
        m, v = b1 * m + (1 - b1) * d, b2 * v + (1 - b2) * d * d
        theta = theta - lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    return theta


@pytest.mark.parametrize("spec", [
    {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "clip_norm": None},
    {"name": "sgd", "lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "clip_norm": 0.5},
    {"name": "adam", "lr": 0.01, "b1": 0.8, "b2": 0.99, "weight_decay": 0.1, "clip_norm": None},
])
def test_optimizers_are_built_as_pytorch_defines_them(spec):
    rng = np.random.default_rng(0)
    theta0 = rng.normal(size=6).astype(np.float32)
    grads = [(rng.normal(size=6) * 3).astype(np.float32) for _ in range(4)]
    opt = make_optimizer(spec)
    theta, state = theta0.copy(), opt.init(theta0)
    for g in grads:
        updates, state = opt.update(g, state, theta)
        theta = np.asarray(optax.apply_updates(theta, updates))
    if spec["name"] == "sgd":
        expected = _torch_sgd_reference(theta0, grads, spec["lr"], spec["momentum"], spec["weight_decay"],
                                        spec["clip_norm"])
    else:
        expected = _torch_adam_reference(theta0, grads, spec["lr"], spec["b1"], spec["b2"], spec["weight_decay"])
    np.testing.assert_allclose(theta, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="b1"):
        make_optimizer({"name": "sgd", "lr": 0.1, "b1": 0.9})
    with pytest.raises(ValueError, match="not one of"):
        make_optimizer({"name": "rmsprop", "lr": 0.1})


def test_every_default_is_plain_data_and_round_trips_through_toml():
    settings = {m: default_settings(m, p) for m in COMPARED for p in ("digits", "cifar")}
    text = cfg.to_toml({"epochs": 3, "model": None}, {m: default_settings(m) for m in COMPARED})
    parsed = tomllib.loads(text)
    assert "model" not in parsed and parsed["epochs"] == 3
    _, tables = cfg.split_file(parsed, "test")
    assert cfg.resolve_settings(tables, "digits") == {m: default_settings(m) for m in COMPARED}
    for value in settings.values():
        for v in value.values():
            assert isinstance(v, (int, float, str, bool, dict)), v
