"""``jaxunlearn forget --models N``: the challenge's forget and final scores from N models a side, end to end
on digits (N = 4, few epochs, one compile per model set and method), and the argument checks."""

import json

import numpy as np
import pytest

from jaxunlearn import cli, metrics
from jaxunlearn.experiments.many_models import COST_NOTES, check_num_models, notes
from jaxunlearn.experiments.report import EPSILON_FILE
from jaxunlearn.io import verify_folder


def test_models_is_checked_before_any_training(tmp_path, capsys):
    assert cli.main(["forget", "--models", "1", "--out", str(tmp_path)]) == 2
    assert "--models must be at least 2" in capsys.readouterr().err
    assert cli.main(["forget", "--models", "4", "--model", "resnet18", "--out", str(tmp_path)]) == 2
    assert "batch-norm" in capsys.readouterr().err  # each of the N models would have its own statistics
    assert not any(tmp_path.iterdir())
    with pytest.raises(ValueError, match="at least 2"):
        check_num_models(1)
    assert check_num_models(64) == 64
    assert notes("influence") == COST_NOTES["influence"] and "ceiling" in notes("retrain") and notes("ssd") == ""


def test_forget_with_models_adds_the_scores_the_epsilons_and_the_histogram(tmp_path, capsys):
    code = cli.main(["forget", "--models", "4", "--methods", "finetune", "--seeds", "0", "--epochs", "1",
                     "--cold-timing", "--quiet", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "forget score (higher=better)" in printed and "final score (higher=better)" in printed
    assert "ceiling" in printed
    folder = tmp_path / "digits-class_3"
    verify_folder(str(folder))
    assert (folder / EPSILON_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((folder / "results.json").read_text())
    assert results["config"]["models"] == 4
    rows = {r["method"]: r for r in results["rows"]}
    assert set(rows) == {"original", "retrain", "finetune"}
    eps = results["epsilons"]["0"]
    num_forget = len(eps["finetune"])
    assert set(eps) == set(rows) and num_forget > 100  # digits class 3: every training example of the class
    for method, row in rows.items():
        assert 0.0 <= row["forget_score"] <= 1.0 and 0.0 <= min(eps[method]) and max(eps[method]) <= 50.0
        # the stored score is the bucketed mean of the stored epsilons
        assert row["forget_score"] == pytest.approx(float(metrics.forget_score(np.asarray(eps[method]), 4)))
    assert rows["original"]["forget_score"] < rows["retrain"]["forget_score"]  # originals are told apart
    assert rows["finetune"]["models_seconds"] > 0 and rows["finetune"]["models_acc_retain_test"] > 0.5
    assert all(0.0 <= row["final_score"] for row in rows.values())
