"""The ramp-engine worker on the example kit (examples/ramp_kit, 4 CV folds): the starting kit
and the broken submission are launched side by side, as ramp-board's dispatcher would, each as
4 datarun folds; collect_results writes ramp's training_output/fold_<k>/ layout, whose scores
are the ones datarun-ramp-fold reported, and the broken one returns (1, its traceback).

The bagged scores (training_output/bagged_scores.csv, read by ramp-board's set_bagged_scores)
must be byte for byte the file `ramp-test --submission starting_kit --save-output` writes for the
same kit, run in the fold image (which carries ramp-workflow). This venv has no ramp-workflow
(the package depends on requests and numpy only), so the worker skips bagging with a warning
here, and its bagging function is run in the fold image, on the folds the worker collected."""

import csv
import importlib.util
import io
import logging
import os
import shutil
import subprocess
import tarfile
import time

import numpy as np
import pytest

from datarun_client import DatarunWorker

N_FOLDS = 4
LAYOUT = ["y_pred_train.npz", "y_pred_test.npz", "scores.csv", "train_time", "valid_time",
          "test_time", "state.txt"]
#: Validation accuracy per fold, as ramp-test computes it (examples/ramp_kit/README.md).
VALID_ACC = [0.9583, 0.9583, 0.8750, 0.9583]
IMAGE = "datarun/fold-python:0.1"
#: Whether this venv can bag (the worker writes bagged_scores.csv itself) or not (it warns).
HAS_RAMPWF = importlib.util.find_spec("rampwf") is not None

#: In the fold image (ramp-workflow 0.7.0; no network, no requests, the default user): ramp-test
#: --save-output on a copy of the kit, then the worker's own bag_training_output on the folds the
#: worker collected (only their fold_<k>/), both bagged_scores.csv printed after markers. The
#: kit, the folds and the client package come in as a tar on stdin. The client module imports
#: requests, which the image lacks and bagging does not use: a stub stands in.
BAG_SCRIPT = r"""
set -e
mkdir /tmp/in && tar -x -C /tmp/in
cp -r /tmp/in/kit /tmp/kit && cd /tmp/kit
ramp-test --submission starting_kit --save-output >/tmp/ramp-test.out 2>&1 || {
  cat /tmp/ramp-test.out; exit 1; }
echo "== ramp-test"; cat submissions/starting_kit/training_output/bagged_scores.csv
cd /tmp/in && python3 - <<'PY'
import sys, types
sys.modules.setdefault("requests", types.ModuleType("requests"))
sys.path.insert(0, "/tmp/in/client")
from datarun_client.ramp import bag_training_output
bag_training_output("/tmp/in/kit", "/tmp/in/ours")
PY
echo "== worker"; cat /tmp/in/ours/bagged_scores.csv
"""


def read_scores(path):
    with open(path) as f:
        return {row["step"]: {k: float(v) for k, v in row.items() if k not in ("step", "time")}
                for row in csv.DictReader(f)}


def bagged_in_image(repo, kit, training_output):
    """Runs BAG_SCRIPT in the fold image: (ramp-test's bagged_scores.csv, the worker's)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in ["problem.py", "data", "submissions/starting_kit"]:
            tar.add(os.path.join(kit, rel), f"kit/{rel}",
                    filter=lambda t: None if "training_output" in t.name else t)
        for k in range(N_FOLDS):
            tar.add(os.path.join(training_output, f"fold_{k}"), f"ours/fold_{k}")
        tar.add(os.path.join(repo, "clients/python/datarun_client"), "client/datarun_client",
                filter=lambda t: None if "__pycache__" in t.name else t)
    out = subprocess.run(["docker", "run", "-i", "--rm", "--network", "none", IMAGE,
                          "sh", "-c", BAG_SCRIPT], input=buf.getvalue(), capture_output=True,
                         timeout=180)
    stdout = out.stdout.decode()
    assert out.returncode == 0, stdout + out.stderr.decode()
    _, rest = stdout.split("== ramp-test\n")
    reference, worker = rest.split("== worker\n")
    return reference, worker


def read_bagged(text):
    """bagged_scores.csv as set_bagged_scores reads it: {(step, n_bag): {score: value}}."""
    return {(row["step"], int(row["n_bag"])): {k: float(v) for k, v in row.items()
                                              if k not in ("step", "n_bag")}
            for row in csv.DictReader(io.StringIO(text))}


@pytest.fixture
def kit(repo, tmp_path):
    dest = tmp_path / "kit"
    shutil.copytree(os.path.join(repo, "examples/ramp_kit"), dest,
                    ignore=shutil.ignore_patterns("training_output", "__pycache__"))
    return dest


def test_the_worker_runs_the_kit_fold_by_fold(client, kit, tmp_path, repo, caplog):
    caplog.set_level(logging.WARNING, logger="datarun_client.ramp")
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
    # The bagged scores: ramp-test's file, to the byte.
    log = (tmp_path / "logs" / "starting_kit" / "log").read_text()
    if HAS_RAMPWF:
        assert good.bagged_scores == str(out / "bagged_scores.csv")
        assert "==> bagged scores (ramp-workflow" in log
        reference, _ = bagged_in_image(repo, kit, out)
        worker = (out / "bagged_scores.csv").read_text()
    else:
        assert good.bagged_scores is None
        assert not (out / "bagged_scores.csv").exists()
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "(rampwf) cannot be imported" in warnings[0], warnings
        assert "bagged_scores.csv not written" in warnings[0]
        assert "==> bagged scores: skipped <==" in log
        reference, worker = bagged_in_image(repo, kit, out)
    print(f"bagged_scores.csv (ramp-test):\n{reference}bagged_scores.csv (worker):\n{worker}")
    assert worker == reference
    bagged = read_bagged(worker)
    assert sorted(bagged) == sorted((step, n) for step in ("valid", "test")
                                    for n in range(N_FOLDS))
    # One fold bagged is that fold: n_bag 0 scores fold 0's validation predictions.
    assert bagged[("valid", 0)] == read_scores(out / "fold_0" / "scores.csv")["valid"]
    # Copied where ramp-board's dispatcher reads results, and the folds' logs kept.
    pred = tmp_path / "predictions" / "starting_kit"
    expected = [f"fold_{k}" for k in range(N_FOLDS)]
    expected += ["bagged_scores.csv"] if HAS_RAMPWF else []
    assert sorted(os.listdir(pred)) == sorted(expected)
    assert log.count("==> datarun fold") == 4

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
