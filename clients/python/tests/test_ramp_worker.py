"""The ramp-engine worker on the example kit (examples/ramp_kit, 4 CV folds): the starting kit
and the broken submission are launched side by side, as ramp-board's dispatcher would, each as
4 datarun folds; collect_results writes ramp's training_output/fold_<k>/ layout, whose scores
are the ones datarun-ramp-fold reported, and the broken one returns (1, its traceback)."""

import csv
import os
import shutil
import time

import numpy as np
import pytest

from datarun_client import DatarunWorker

N_FOLDS = 4
LAYOUT = ["y_pred_train.npz", "y_pred_test.npz", "scores.csv", "train_time", "valid_time",
          "test_time", "state.txt"]
#: Validation accuracy per fold, as ramp-test computes it (examples/ramp_kit/README.md).
VALID_ACC = [0.9583, 0.9583, 0.8750, 0.9583]


def read_scores(path):
    with open(path) as f:
        return {row["step"]: {k: float(v) for k, v in row.items() if k not in ("step", "time")}
                for row in csv.DictReader(f)}


@pytest.fixture
def kit(repo, tmp_path):
    dest = tmp_path / "kit"
    shutil.copytree(os.path.join(repo, "examples/ramp_kit"), dest,
                    ignore=shutil.ignore_patterns("training_output", "__pycache__"))
    return dest


def test_the_worker_runs_the_kit_fold_by_fold(client, kit, tmp_path):
    config = {
        "kit_dir": str(kit),
        "data_dir": str(kit),
        "submissions_dir": str(kit / "submissions"),
        "logs_dir": str(tmp_path / "logs"),
        "predictions_dir": str(tmp_path / "predictions"),
        "n_folds": N_FOLDS,
        "memory": "512M",
        "timeout": 300,
        "poll_interval": 0.5,
        "client": client,
    }
    good = DatarunWorker(config, "starting_kit")
    broken = DatarunWorker(config, "broken")
    assert good.status == "initialized"
    with pytest.raises(ValueError, match="launch"):
        good.collect_results()
    for w in (good, broken):
        w.setup()
        assert w.status == "setup"
        w.launch_submission()
        assert len(w.fold_ids) == N_FOLDS
    # The dispatcher's loop: poll status until the workers leave "running".
    deadline = time.monotonic() + 240
    while any(w.status == "running" for w in (good, broken)):
        assert time.monotonic() < deadline, [str(w) for w in (good, broken)]
        time.sleep(0.5)
    assert good.status == "finished" and broken.status == "finished"

    code, msg = good.collect_results()
    assert (code, msg) == (0, ""), msg
    assert good.status == "collected"
    out = kit / "submissions" / "starting_kit" / "training_output"
    for k in range(N_FOLDS):
        fold_dir = out / f"fold_{k}"
        assert sorted(os.listdir(fold_dir)) == sorted(LAYOUT), k
        assert (fold_dir / "state.txt").read_text() == "scored"
        # The layout's scores are what datarun-ramp-fold reported for the fold.
        reported = good.fold_scores[k]
        assert reported["fold"] == k and reported["n_folds"] == N_FOLDS
        written = read_scores(fold_dir / "scores.csv")
        expected = {step: {s: v for s, v in scores.items() if s != "time"}
                    for step, scores in reported["scores"].items()}
        assert written == expected, k
        assert written["valid"]["acc"] == pytest.approx(VALID_ACC[k], abs=1e-4)
        print(f"fold {k}: valid {written['valid']}, test {written['test']}")
        for t in ("train_time", "valid_time", "test_time"):
            assert float((fold_dir / t).read_text()) >= 0
        train = np.load(fold_dir / "y_pred_train.npz")["y_pred"]
        test = np.load(fold_dir / "y_pred_test.npz")["y_pred"]
        assert train.shape == (120, 3) and test.shape == (30, 3)
    # Copied where ramp-board's dispatcher reads results, and the folds' logs kept.
    pred = tmp_path / "predictions" / "starting_kit"
    assert sorted(os.listdir(pred)) == [f"fold_{k}" for k in range(N_FOLDS)]
    assert (tmp_path / "logs" / "starting_kit" / "log").read_text().count("==> datarun fold") == 4

    code, msg = broken.collect_results()
    assert code == 1
    assert msg.startswith("Traceback") and "ValueError: this submission is broken on purpose" in msg
    broken_out = kit / "submissions" / "broken" / "training_output"
    assert (broken_out / "fold_0" / "state.txt").read_text() == "training_error"
    assert not (tmp_path / "predictions" / "broken").exists()

    for w in (good, broken):
        w.teardown()
        assert w.status == "killed"
    assert not out.exists(), "teardown removes training_output once predictions_dir has it"
    assert pred.exists()


def test_setup_refuses_a_bad_config(client, kit):
    with pytest.raises(ValueError, match="n_folds"):
        DatarunWorker({"kit_dir": str(kit), "client": client}, "starting_kit").setup()
    with pytest.raises(ValueError, match="no submission directory"):
        DatarunWorker({"kit_dir": str(kit), "n_folds": 4, "client": client}, "nope").setup()


def test_teardown_before_collecting_removes_the_folds(client, kit):
    """A worker killed while its submission runs leaves nothing running on datarun."""
    w = DatarunWorker({"kit_dir": str(kit), "n_folds": N_FOLDS, "client": client,
                       "memory": "512M"}, "starting_kit")
    w.setup()
    w.launch_submission()
    w.teardown()
    assert w.status == "killed"
    assert [client.fold(i)["fold"]["state"] for i in w.fold_ids] == ["removed"] * N_FOLDS
