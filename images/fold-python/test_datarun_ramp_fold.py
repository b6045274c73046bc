"""Tests of datarun-ramp-fold. They need ramp-workflow, so they run inside the image:

    docker run --rm --network none -w /opt/datarun datarun/fold-python:0.1 \
        python3 -m unittest test_datarun_ramp_fold

(images/build-fold-python.sh does this after every build.) The kit is examples/ramp_kit
(/opt/datarun/ramp_kit in the image). Each fold runs the runner as a child process on a read-only
copy of the kit, as the agent would, and is compared with `ramp-test --save-output` run once.
"""
import csv
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = next(p for p in (os.environ.get("DATARUN_RAMP_FOLD_BIN"), "/usr/local/bin/datarun-ramp-fold",
                          os.path.join(HERE, "datarun-ramp-fold")) if p and os.path.isfile(p))
KIT = next(p for p in ("/opt/datarun/ramp_kit", os.path.join(HERE, "../../examples/ramp_kit"))
           if os.path.isfile(os.path.join(p, "problem.py")))
N_FOLDS = 4
SCORES = ["acc", "nll", "mar"]


def copy_kit(dest):
    shutil.copytree(KIT, dest, ignore=shutil.ignore_patterns("training_output", "__pycache__"))


def read_only(path):
    for root, dirs, files in os.walk(path):
        for name in dirs + files + [""]:
            p = os.path.join(root, name)
            os.chmod(p, os.stat(p).st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def scores_csv(path):
    """{step: {score: float}} without the time column."""
    with open(path) as f:
        return {row["step"]: {s: float(row[s]) for s in SCORES} for row in csv.DictReader(f)}


class RampTestOnce:
    """`ramp-test --submission starting_kit --save-output` on a copy of the kit, run once."""
    dir = None

    @classmethod
    def output(cls):
        if cls.dir is None:
            cls.tmp = tempfile.TemporaryDirectory()
            cls.dir = os.path.join(cls.tmp.name, "kit")
            copy_kit(cls.dir)
            done = subprocess.run(["ramp-test", "--submission", "starting_kit", "--save-output"],
                                  cwd=cls.dir, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            cls.stdout = done.stdout
        return os.path.join(cls.dir, "submissions", "starting_kit", "training_output")


class RampFoldTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.input = os.path.join(self.tmp.name, "input")
        self.output = os.path.join(self.tmp.name, "output")
        copy_kit(self.input)
        os.makedirs(self.output)

    def fold_json(self, **fold):
        path = os.path.join(self.input, "ramp-fold.json")
        if os.path.exists(path):
            os.chmod(path, 0o644)
        with open(path, "w") as f:
            json.dump(fold, f)

    def run_fold(self, *args):
        env = dict(os.environ, DATARUN_INPUT=self.input, DATARUN_OUTPUT=self.output)
        return subprocess.run([RUNNER, *args], env=env, capture_output=True, text=True, timeout=300)

    def test_each_fold_equals_ramp_test(self):
        expected_dir = RampTestOnce.output()
        digests = set()
        for k in range(N_FOLDS):
            with self.subTest(fold=k):
                shutil.rmtree(self.output)
                os.makedirs(self.output)
                os.chmod(self.input, 0o755)
                self.fold_json(submission="starting_kit", fold=k)
                read_only(self.input)  # as the agent mounts it: nothing may be written there
                done = self.run_fold()
                self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
                fold_dir = os.path.join(self.output, "training_output", f"fold_{k}")
                expected = os.path.join(expected_dir, f"fold_{k}")
                for name in ("y_pred_train.npz", "y_pred_test.npz", "scores.csv", "train_time",
                             "valid_time", "test_time", "state.txt"):
                    self.assertTrue(os.path.isfile(os.path.join(fold_dir, name)), name)
                    self.assertTrue(os.path.isfile(os.path.join(expected, name)), name)
                # The same scores, to the last bit, as ramp-test's for this fold.
                got = scores_csv(os.path.join(fold_dir, "scores.csv"))
                self.assertEqual(got, scores_csv(os.path.join(expected, "scores.csv")))
                self.assertEqual(list(got), ["train", "valid", "test"])
                for suffix in ("train", "test"):
                    a = np.load(os.path.join(fold_dir, f"y_pred_{suffix}.npz"))["y_pred"]
                    b = np.load(os.path.join(expected, f"y_pred_{suffix}.npz"))["y_pred"]
                    np.testing.assert_array_equal(a, b)
                self.assertEqual(np.load(os.path.join(fold_dir, "y_pred_train.npz"))["y_pred"].shape,
                                 (120, 3))
                for name in ("train_time", "valid_time", "test_time"):
                    with open(os.path.join(fold_dir, name)) as f:
                        self.assertGreaterEqual(float(f.read()), 0)
                with open(os.path.join(fold_dir, "state.txt")) as f:
                    self.assertEqual(f.read(), "scored")
                with open(os.path.join(self.output, "scores.json")) as f:
                    summary = json.load(f)
                self.assertEqual(summary["scores"], got)
                self.assertEqual((summary["fold"], summary["n_folds"]), (k, N_FOLDS))
                self.assertEqual((summary["train_size"], summary["valid_size"]), (96, 24))
                digests.add(summary["cv_sha256"])
                self.assertIn(f"CV fold {k} of {N_FOLDS}", done.stdout)
        self.assertEqual(len(digests), N_FOLDS, "every fold has its own train/valid indices")
        self.assertIn("CV fold 3", RampTestOnce.stdout)

    def test_warm_mode_waits_for_its_go_then_runs_the_fold_as_told(self):
        """With DATARUN_WARM the runner prepares and waits, printing nothing, until the go file
        appears; then it takes the go's environment and args and gives ramp-test's scores."""
        expected = os.path.join(RampTestOnce.output(), "fold_2")
        go_dir = os.path.join(self.tmp.name, "warm")
        os.makedirs(go_dir)
        go = os.path.join(go_dir, "go.json")
        self.fold_json(submission="starting_kit", fold=2)
        os.rename(os.path.join(self.input, "ramp-fold.json"), os.path.join(self.input, "f.json"))
        read_only(self.input)
        waiting = os.path.join(self.tmp.name, "waiting")
        os.makedirs(waiting)
        env = dict(os.environ, DATARUN_INPUT="/nonexistent", DATARUN_OUTPUT=waiting,
                   DATARUN_WARM=go)
        proc = subprocess.Popen([RUNNER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        self.addCleanup(proc.kill)
        try:
            proc.wait(timeout=3)
            self.fail(f"the warm runner did not wait: {proc.returncode}")
        except subprocess.TimeoutExpired:
            pass
        self.assertEqual(os.listdir(waiting), [".datarun-warm-ready"], "ready, nothing else")
        self.assertFalse(os.listdir(self.output), "nothing written before the go")
        with open(go + ".tmp", "w") as f:
            json.dump({"args": ["f.json"], "env": {"DATARUN_INPUT": self.input,
                                                  "DATARUN_OUTPUT": self.output,
                                                  "OMP_NUM_THREADS": "1"}}, f)
        os.rename(go + ".tmp", go)
        out, err = proc.communicate(timeout=120)
        self.assertEqual(proc.returncode, 0, out + err)
        self.assertIn("CV fold 2 of 4", out)
        fold_dir = os.path.join(self.output, "training_output", "fold_2")
        self.assertEqual(scores_csv(os.path.join(fold_dir, "scores.csv")),
                         scores_csv(os.path.join(expected, "scores.csv")))

    def test_bagging_the_folds_equals_ramp_test(self):
        """Every fold run here, then "bag": true on the kit and the folds' predictions writes
        the bagged_scores.csv of ramp-test --save-output, byte for byte."""
        expected_dir = RampTestOnce.output()
        folds = os.path.join(self.tmp.name, "folds")
        for k in range(N_FOLDS):
            shutil.rmtree(self.output)
            os.makedirs(self.output)
            self.fold_json(submission="starting_kit", fold=k, n_folds=N_FOLDS)
            done = self.run_fold()
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            for suffix in ("train", "test"):
                name = f"training_output/fold_{k}/y_pred_{suffix}.npz"
                os.makedirs(os.path.dirname(os.path.join(folds, name)), exist_ok=True)
                shutil.copy(os.path.join(self.output, name), os.path.join(folds, name))
        shutil.copytree(os.path.join(folds, "training_output"),
                        os.path.join(self.input, "training_output"))
        shutil.rmtree(self.output)
        os.makedirs(self.output)
        self.fold_json(submission="starting_kit", bag=True, n_folds=N_FOLDS)
        read_only(self.input)
        done = self.run_fold()
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn(f"bagged {N_FOLDS} folds into training_output/bagged_scores.csv", done.stdout)
        with open(os.path.join(self.output, "training_output", "bagged_scores.csv")) as f:
            got = f.read()
        with open(os.path.join(expected_dir, "bagged_scores.csv")) as f:
            self.assertEqual(got, f.read())
        self.assertEqual(len(got.splitlines()), 1 + 2 * N_FOLDS)  # valid and test, n_bag 0..3

    def test_bagging_without_a_fold_s_predictions_exits_2(self):
        self.fold_json(submission="starting_kit", bag=True)
        done = self.run_fold()
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertIn("reading fold 0's y_pred_train failed", done.stderr)

    def test_every_module_a_fold_imports_is_byte_compiled(self):
        """The per-fold start-up cost: what a fold imports (the kit's problem.py imports
        rampwf, which imports scikit-learn, pandas, scipy) is read from .pyc files baked into
        the image, none compiled from source at each start."""
        done = subprocess.run(["python3", "-v", "-c", "import rampwf, rampwf.utils.submission, "
                               "rampwf.utils.testing, sklearn.linear_model, sklearn.preprocessing"],
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr[-2000:])
        cached = [l for l in done.stderr.splitlines() if l.startswith("# code object from")]
        source = [l for l in cached if not l.rstrip("'").endswith(".pyc")]
        self.assertGreater(len(cached), 500, "python3 -v says which file each module came from")
        self.assertEqual(source, [], f"{len(source)} module(s) compiled from source")

    def test_the_kit_may_sit_in_a_subdirectory(self):
        kit = os.path.join(self.tmp.name, "kit")
        os.rename(self.input, kit)
        os.makedirs(self.input)
        os.rename(kit, os.path.join(self.input, "kit"))
        self.fold_json(submission="starting_kit", fold=1, kit_dir="kit")
        done = self.run_fold()
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertTrue(os.path.isfile(os.path.join(self.output, "training_output/fold_1/scores.csv")))

    def test_data_label_selects_data_and_output_dirs(self):
        problem = os.path.join(self.input, "problem.py")
        with open(problem) as f:
            text = f.read()
        text = text.replace('def get_train_data(path="."):\n    return _read_data(path, "train.csv")',
                            'def get_train_data(path=".", data_label=""):\n'
                            '    return _read_data(path, os.path.join(data_label, "train.csv"))')
        text = text.replace('def get_test_data(path="."):\n    return _read_data(path, "test.csv")',
                            'def get_test_data(path=".", data_label=""):\n'
                            '    return _read_data(path, os.path.join(data_label, "test.csv"))')
        self.assertEqual(text.count("data_label"), 4, "problem.py changed: update this test")
        with open(problem, "w") as f:
            f.write(text)
        os.makedirs(os.path.join(self.input, "data", "iris"))
        for name in ("train.csv", "test.csv"):
            os.rename(os.path.join(self.input, "data", name), os.path.join(self.input, "data", "iris", name))
        self.fold_json(submission="starting_kit", fold=1, data_label="iris")
        done = self.run_fold()
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        expected = os.path.join(RampTestOnce.output(), "fold_1", "scores.csv")
        self.assertEqual(scores_csv(os.path.join(self.output, "training_output/iris/fold_1/scores.csv")),
                         scores_csv(expected))

    def test_the_kit_may_come_as_one_archive(self):
        archive = os.path.join(self.tmp.name, "iris-kit.tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(self.input, arcname=".")
        shutil.rmtree(self.input)
        os.makedirs(self.input)
        shutil.copy(archive, self.input)
        self.fold_json(submission="starting_kit", fold=3, kit_archive="iris-kit.tar.gz")
        read_only(self.input)
        done = self.run_fold()
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        expected = os.path.join(RampTestOnce.output(), "fold_3", "scores.csv")
        self.assertEqual(scores_csv(os.path.join(self.output, "training_output/fold_3/scores.csv")),
                         scores_csv(expected))

    def test_archives_must_stay_inside_the_kit(self):
        evil = os.path.join(self.tmp.name, "evil")
        with open(evil, "w") as f:
            f.write("x")
        for name, member in (("up.tar", "../evil"), ("abs.tar", "/tmp/evil"), ("link.tar", None)):
            with self.subTest(name=name):
                with tarfile.open(os.path.join(self.input, name), "w") as tar:
                    if member:  # TarInfo by hand: tar.add would strip a leading /
                        info = tarfile.TarInfo(member)
                        info.size = 1
                        with open(evil, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        info = tarfile.TarInfo("problem.py")
                        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                        tar.addfile(info)
                self.fold_json(submission="starting_kit", fold=0, kit_archive=name)
                done = self.run_fold()
                self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
                self.assertIn("outside the kit" if member else "not a regular file", done.stderr)

    def test_broken_submission_exits_1_with_traceback(self):
        self.fold_json(submission="broken", fold=0)
        done = self.run_fold()
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("Traceback", done.stderr)
        self.assertIn("ValueError: this submission is broken on purpose", done.stderr)
        self.assertIn("submission broken failed on fold 0", done.stderr)
        fold_dir = os.path.join(self.output, "training_output", "fold_0")
        with open(os.path.join(fold_dir, "state.txt")) as f:
            self.assertEqual(f.read(), "training_error")
        with open(os.path.join(fold_dir, "error.txt")) as f:
            self.assertIn("broken on purpose", f.read())
        self.assertFalse(os.path.exists(os.path.join(self.output, "scores.json")))

    def test_submission_failing_to_predict_exits_1(self):
        os.makedirs(os.path.join(self.input, "submissions", "no_proba"))
        with open(os.path.join(self.input, "submissions", "no_proba", "estimator.py"), "w") as f:
            f.write("from sklearn.svm import LinearSVC\n\n"
                    "def get_estimator():\n    return LinearSVC()\n")
        self.fold_json(submission="no_proba", fold=0)
        done = self.run_fold()
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("predict_proba", done.stderr)
        with open(os.path.join(self.output, "training_output", "fold_0", "state.txt")) as f:
            self.assertEqual(f.read(), "validating_error")

    def test_bad_kits_and_folds_exit_2(self):
        cases = [
            ({"submission": "starting_kit", "fold": 4}, "get_cv gives 4 fold(s), 0 to 3"),
            ({"submission": "nope", "fold": 0}, "no submission 'nope'"),
            ({"submission": "../x", "fold": 0}, "must be a submission's directory name"),
            ({"submission": "starting_kit", "fold": -1}, "non-negative integer"),
            ({"submission": "starting_kit", "fold": "0"}, "non-negative integer"),
            ({"submission": "starting_kit", "fold": 0, "folds": 4}, "unknown key(s) ['folds']"),
            ({"submission": "starting_kit", "fold": 0, "n_folds": 5},
             "the kit's get_cv gives 4 fold(s) here (ramp-workflow 0.7.0), the caller expected 5"),
            ({"submission": "starting_kit", "fold": 0, "n_folds": 0}, "positive integer"),
            ({"submission": "starting_kit", "fold": 0, "bag": True}, "give no \"fold\""),
            ({"submission": "starting_kit", "bag": "yes"}, "\"bag\" must be true or false"),
            ({"submission": "starting_kit", "fold": 0, "kit_dir": "elsewhere"}, "no problem.py"),
            ({"submission": "starting_kit", "fold": 0, "kit_archive": "kit.tar"},
             "kit archive kit.tar not found"),
        ]
        for fold, message in cases:
            with self.subTest(fold=fold):
                self.fold_json(**fold)
                done = self.run_fold()
                self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
                self.assertIn(message, done.stderr)

    def test_missing_fold_description_exits_2(self):
        done = self.run_fold()
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("cannot read the fold description", done.stderr)

    def test_no_problem_py_exits_2(self):
        os.remove(os.path.join(self.input, "problem.py"))
        self.fold_json(submission="starting_kit", fold=0)
        done = self.run_fold()
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("not a ramp kit: no problem.py", done.stderr)

    def test_missing_data_exits_2(self):
        os.remove(os.path.join(self.input, "data", "test.csv"))
        self.fold_json(submission="starting_kit", fold=0)
        done = self.run_fold()
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("problem.get_test_data failed", done.stderr)
        self.assertIn("test.csv", done.stderr)

    def test_broken_problem_py_exits_2_with_traceback(self):
        with open(os.path.join(self.input, "problem.py"), "a") as f:
            f.write("\nraise RuntimeError('problem.py is broken')\n")
        self.fold_json(submission="starting_kit", fold=0)
        done = self.run_fold()
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("reading problem.py failed", done.stderr)
        self.assertIn("RuntimeError: problem.py is broken", done.stderr)


if __name__ == "__main__":
    unittest.main()
