"""The ramp-engine worker on the example kit (examples/ramp_kit, 4 CV folds): the starting kit
and the broken submission are launched side by side, as ramp-engine's dispatcher would, each as
4 datarun folds (the count read from the kit's get_cv); collect_results writes ramp's
training_output/fold_<k>/ layout, whose scores are the ones datarun-ramp-fold reported, and the
broken one returns (1, its traceback).

The bagged scores (training_output/bagged_scores.csv, read by ramp-board's set_bagged_scores)
come from a bagging fold in the fold image and must be byte for byte the file
`ramp-test --submission starting_kit --save-output` writes for the same kit in that image.

The venv has ramp-engine 0.10.1 with ramp-database and ramp-utils, and ramp-workflow (as a RAMP
deployment has them): DatarunWorker is ramp-engine's BaseWorker's subclass; child processes
that cannot import ramp-database/ramp-utils (ramp-engine alone), or ramp-engine at all, check
the other two cases."""

import csv
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time

import numpy as np
import pytest

from datarun_client import DatarunWorker
from datarun_client.ramp import kit_cv

N_FOLDS = 4
LAYOUT = ["y_pred_train.npz", "y_pred_test.npz", "scores.csv", "train_time", "valid_time",
          "test_time", "state.txt"]
#: Validation accuracy per fold, as ramp-test computes it (examples/ramp_kit/README.md).
VALID_ACC = [0.9583, 0.9583, 0.8750, 0.9583]
IMAGE = "datarun/fold-python:0.1"

#: In the fold image (ramp-workflow 0.7.0; no network, the default user): ramp-test
#: --save-output on a copy of the kit (coming in as a tar on stdin), its bagged_scores.csv printed.
BAG_SCRIPT = r"""
set -e
mkdir /tmp/in && tar -x -C /tmp/in
cp -r /tmp/in/kit /tmp/kit && cd /tmp/kit
ramp-test --submission starting_kit --save-output >/tmp/ramp-test.out 2>&1 || {
  cat /tmp/ramp-test.out; exit 1; }
echo "== ramp-test"; cat submissions/starting_kit/training_output/bagged_scores.csv
"""


def read_scores(path):
    with open(path) as f:
        return {row["step"]: {k: float(v) for k, v in row.items() if k not in ("step", "time")}
                for row in csv.DictReader(f)}


def bagged_in_image(kit):
    """ramp-test's bagged_scores.csv for the starting kit, run in the fold image."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in ["problem.py", "data", "submissions/starting_kit"]:
            tar.add(os.path.join(kit, rel), f"kit/{rel}",
                    filter=lambda t: None if "training_output" in t.name else t)
    out = subprocess.run(["docker", "run", "-i", "--rm", "--network", "none", IMAGE,
                          "sh", "-c", BAG_SCRIPT], input=buf.getvalue(), capture_output=True,
                         timeout=180)
    stdout = out.stdout.decode()
    assert out.returncode == 0, stdout + out.stderr.decode()
    return stdout.split("== ramp-test\n")[1]


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
        "n_folds": 5,  # wrong: ignored with a warning, the kit's get_cv says 4
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
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "n_folds" in r.getMessage()]
    assert len(warnings) == 2, warnings  # the same n_folds warning from each worker
    assert all("n_folds=5 in the config ignored: the kit's get_cv gives 4 folds" in w
               for w in warnings), warnings
    assert good.warnings == [warnings[0]] and good.stopped_because is None
    # The bagged scores: written by the bagging fold in the image, ramp-test's file to the byte.
    log = (tmp_path / "logs" / "starting_kit" / "log").read_text()
    assert good.bagged_scores == str(out / "bagged_scores.csv")
    assert good.bag_fold_id is not None
    bag_fold = client.fold(good.bag_fold_id)
    assert bag_fold["fold"]["spec"]["image"] == IMAGE and bag_fold["fold"]["state"] == "done"
    # Its inputs: the kit and the 4 folds' predictions, by the sha256 of the folds' outputs.
    inputs = {i["name"]: i["sha256"] for i in bag_fold["fold"]["spec"]["inputs"]}
    for k, fold_id in enumerate(good.fold_ids):
        outputs = {o["name"]: o["sha256"] for o in client.fold(fold_id)["attempts"][-1]["outputs"]}
        for suffix in ("train", "test"):
            name = f"training_output/fold_{k}/y_pred_{suffix}.npz"
            assert inputs[name] == outputs[name], name
    # It was submitted with the CV folds, waiting on the master for their predictions, so it
    # started when the last was done, not after the dispatcher's next poll and the downloads.
    assert bag_fold["fold"]["spec"]["inputs_from"] == [
        {"fold": fold_id, "output": f"training_output/fold_{k}/y_pred_{suffix}.npz"}
        for k, fold_id in enumerate(good.fold_ids) for suffix in ("train", "test")]
    cv_ended = [client.fold(i)["fold"]["ended_at"] for i in good.fold_ids]
    assert bag_fold["fold"]["submitted_at"] <= min(cv_ended)
    print(f"bagging fold started {bag_fold['fold']['started_at'] - max(cv_ended)} ms after "
          f"the last CV fold ended")
    assert f"==> datarun fold {good.bag_fold_id} (bagging): done <==" in log
    assert "bagged 4 folds into training_output/bagged_scores.csv" in log
    reference = bagged_in_image(kit)
    worker = (out / "bagged_scores.csv").read_text()
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
    expected += ["bagged_scores.csv"]
    assert sorted(os.listdir(pred)) == sorted(expected)
    assert log.count("==> datarun fold") == 5  # 4 CV folds and the bagging fold

    code, msg = broken.collect_results()
    assert code == 1
    assert msg.startswith("Traceback") and "ValueError: this submission is broken on purpose" in msg
    broken_out = kit / "submissions" / "broken" / "training_output"
    # Its first failure removed the folds still running, if any were left: each fold failed
    # with training_error or was removed (and has no output).
    states = [client.fold(i)["fold"]["state"] for i in broken.fold_ids]
    assert "failed" in states and set(states) <= {"failed", "removed"}, states
    if "removed" in states:
        assert "failed with the submission's own error" in broken.stopped_because
    for k, state in enumerate(states):
        if state == "failed":
            assert (broken_out / f"fold_{k}" / "state.txt").read_text() == "training_error"
    assert not (tmp_path / "predictions" / "broken").exists()

    for w in (good, broken):
        w.teardown()
        assert w.status == "killed"
    assert not out.exists(), "teardown removes training_output once predictions_dir has it"
    assert pred.exists()


def test_a_kit_without_test_labels_is_bagged_from_the_predictions_there_are(client, kit):
    """No test labels: the folds write no y_pred_test.npz, so the bagging fold submitted with
    them fails for want of it, and collect_results bags with another fold on what there is."""
    problem = kit / "problem.py"
    old = 'def get_test_data(path="."):\n    return _read_data(path, "test.csv")\n'
    text = problem.read_text()
    assert old in text
    problem.write_text(text.replace(old, 'def get_test_data(path="."):\n'
                                         '    X_df, _ = _read_data(path, "test.csv")\n'
                                         '    return X_df, None\n'))
    w = DatarunWorker({"kit_dir": str(kit), "memory": "512M", "timeout": 300,
                       "client": client}, "starting_kit")
    w.setup()
    w.launch_submission()
    up_front = w.bag_fold_id
    code, msg = w.collect_results()
    assert (code, msg) == (0, ""), msg
    first = client.fold(up_front)["fold"]
    assert first["state"] == "failed", first
    assert "has no output" in first["reason"] and "y_pred_test.npz" in first["reason"], first
    assert w.bag_fold_id not in (None, up_front)
    bag = client.fold(w.bag_fold_id)["fold"]
    assert bag["state"] == "done" and not bag["spec"].get("inputs_from"), bag
    with open(w.bagged_scores) as f:
        bagged = read_bagged(f.read())
    assert sorted(bagged) == [("valid", n) for n in range(N_FOLDS)]
    assert w.warnings == [], w.warnings
    w.teardown()


def test_setup_refuses_a_bad_config(client, kit, tmp_path):
    with pytest.raises(ValueError, match="no submission directory"):
        DatarunWorker({"kit_dir": str(kit), "client": client}, "nope").setup()
    with pytest.raises(ValueError, match="no problem.py"):
        DatarunWorker({"kit_dir": str(tmp_path), "client": client}, "starting_kit").setup()
    # get_cv is the kit's: a kit whose get_cv fails cannot be set up, and says why.
    with open(kit / "problem.py", "a") as f:
        f.write("\ndef get_cv(X, y):\n    raise RuntimeError('no folds today')\n")
    w = DatarunWorker({"kit_dir": str(kit), "client": client}, "starting_kit")
    with pytest.raises(ValueError, match="get_cv failed .RuntimeError: no folds today"):
        w.setup()
    assert w.status == "error"
    w.teardown()  # as the dispatcher does after a failed setup
    assert w.status == "killed"
    w = DatarunWorker({"client": client, "predictions_dir": str(tmp_path)}, "starting_kit")
    with pytest.raises(ValueError, match="kit_dir"):
        w.setup()
    w.teardown()


def test_the_fold_count_is_the_kit_s_get_cv(client, kit):
    """Another get_cv, another count: 3 folds, no n_folds given."""
    text = (kit / "problem.py").read_text()
    assert "n_splits=4" in text, "problem.py changed: update this test"
    (kit / "problem.py").write_text(text.replace("n_splits=4", "n_splits=3"))
    w = DatarunWorker({"kit_dir": str(kit), "client": client}, "starting_kit")
    w.setup()
    assert w.n_folds == 3 and len(kit_cv(str(kit))) == 3
    assert w.warnings == []
    w.teardown()


def test_teardown_before_collecting_removes_the_folds(client, kit):
    """A worker killed while its submission runs leaves nothing running on datarun."""
    w = DatarunWorker({"kit_dir": str(kit), "client": client, "memory": "512M"}, "starting_kit")
    w.setup()
    w.launch_submission()
    w.teardown()
    assert w.status == "killed"
    assert [client.fold(i)["fold"]["state"] for i in w.fold_ids] == ["removed"] * N_FOLDS


def test_a_fold_failing_with_its_own_error_stops_its_siblings(client, kit, tmp_path, caplog):
    """A submission that fails at once on the one fold whose training rows lack a marked row,
    and sleeps 300 s on the others: the worker removes those as soon as the failure shows, and
    collects (1, the traceback) in well under the sleep."""
    cv = kit_cv(str(kit))
    counts = np.zeros(120, dtype=int)
    for _, valid_is in cv:
        counts[valid_is] += 1
    import pandas as pd

    X = pd.read_csv(kit / "data" / "train.csv").drop(columns="species").to_numpy()
    unique = [r for r in range(len(X)) if (X == X[r]).all(axis=1).sum() == 1]
    mark = next(r for r in unique if counts[r] == 1)  # in one fold's validation rows only
    failing = next(k for k, (_, valid_is) in enumerate(cv) if mark in valid_is)
    (kit / "submissions" / "flaky").mkdir()
    (kit / "submissions" / "flaky" / "estimator.py").write_text(textwrap.dedent(f"""
        import time
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        MARK = np.array({X[mark].tolist()!r})

        class Estimator(LogisticRegression):
            def fit(self, X, y):
                if not (np.asarray(X, dtype=float) == MARK).all(axis=1).any():
                    raise ValueError("flaky: the marked row is not in this fold")
                time.sleep(300)
                return super().fit(X, y)

        def get_estimator():
            return Estimator()
        """))
    caplog.set_level(logging.WARNING, logger="datarun_client.ramp")
    w = DatarunWorker({"kit_dir": str(kit), "client": client, "memory": "512M", "timeout": 600,
                       "logs_dir": str(tmp_path / "logs")}, "flaky")
    w.setup()
    w.launch_submission()
    started = time.monotonic()
    code, msg = w.collect_results()
    took = time.monotonic() - started
    assert code == 1 and "flaky: the marked row is not in this fold" in msg, msg
    assert took < 120, f"the siblings were not stopped: {took:.0f} s"
    states = [client.fold(i)["fold"]["state"] for i in w.fold_ids]
    assert states[failing] == "failed", states
    assert sorted(s for k, s in enumerate(states) if k != failing) == ["removed"] * 3, states
    assert w.stopped_because.startswith(
        f"CV fold {failing} (datarun fold {w.fold_ids[failing]}) failed with the submission's "
        "own error (exit_code 1): removed its 3 unfinished sibling fold(s)"), w.stopped_because
    assert any(w.stopped_because in r.getMessage() for r in caplog.records)
    log = (tmp_path / "logs" / "flaky" / "log").read_text()
    assert log.startswith(f"==> stopped <==\n{w.stopped_because}")
    assert w.status == "collected" and w.bag_fold_id is None
    w.teardown()


#: Run in a child process: import blockers for the named top-level packages (as if they were
#: not installed), then what the case checks.
CHILD = r"""
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
sys.meta_path.insert(0, Block())
"""

ALONE = CHILD + r"""
import os, sys
from datarun_client import DatarunWorker
base = DatarunWorker.__mro__[1]
assert base.__name__ == "BaseWorker" and base.__module__ == "ramp_engine.base", base
assert sys.modules["ramp_engine.base"].__file__.endswith(os.path.join("ramp_engine", "base.py"))
assert "ramp_engine" not in sys.modules  # its __init__ (dispatcher, ramp-database) never ran
w = DatarunWorker({"kit_dir": "."}, "s")
assert w.status == "initialized" and w.time_since_last_status_check() is None
w.status = "running"
w._follow = lambda wait: False
assert w.status == "running" and 0 <= w.time_since_last_status_check() < 5
print("ok", base)
"""

MISSING = CHILD + r"""
from datarun_client import DatarunWorker, Client
try:
    DatarunWorker({"kit_dir": "."}, "s")
except ImportError as e:
    print("ImportError:", e)
else:
    raise SystemExit("created without ramp-engine")
"""


def run_child(code, blocked, tmp_path):
    out = subprocess.run([sys.executable, "-c", code, blocked], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_the_worker_is_ramp_engine_s_own_base_worker(tmp_path):
    from ramp_engine.base import BaseWorker
    import ramp_engine

    assert ramp_engine.__version__ == "0.10.1"
    assert DatarunWorker.__mro__[1] is BaseWorker
    w = DatarunWorker({"kit_dir": "."}, "starting_kit")  # abstract methods all implemented
    assert str(w) == 'DatarunWorker(starting_kit): status="initialized"'
    assert w.time_since_last_status_check() is None


def test_with_ramp_engine_alone_the_base_is_still_ramp_engine_s(tmp_path):
    assert run_child(ALONE, "ramp_database,ramp_utils,boto3,botocore", tmp_path).startswith("ok")


def test_without_ramp_engine_creating_a_worker_says_so(tmp_path):
    out = run_child(MISSING, "ramp_engine", tmp_path)
    assert "ImportError: DatarunWorker is a ramp-engine worker and ramp-engine is not " \
           "installed" in out and "pip install ramp-engine==0.10.1" in out, out
