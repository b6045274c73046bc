"""Tests of datarun-fold. They need numpy, pandas and scikit-learn, so they run inside the image:

    docker run --rm --network none datarun/fold-python:0.1 \
        python3 -m unittest /opt/datarun/test_datarun_fold.py

(images/build-fold-python.sh does this after every build.) Each test runs the runner as a child
process on a fold it writes to a temporary input dir, as the agent would.
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNER = next(p for p in (os.environ.get("DATARUN_FOLD_BIN"), "/usr/local/bin/datarun-fold",
                          os.path.join(HERE, "datarun-fold")) if p and os.path.isfile(p))
IRIS = next((p for p in ("/opt/datarun/iris.csv", os.path.join(HERE, "../../examples/iris/iris.csv"))
             if os.path.isfile(p)), None)

CLASSIFIER = """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

class Classifier:
    def __init__(self):
        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    def fit(self, X, y):
        self.model.fit(X, y)
        self.classes_ = self.model.classes_
    def predict_proba(self, X):
        return self.model.predict_proba(X)
"""
REGRESSOR = """
from sklearn.linear_model import LinearRegression

class Regressor:
    def __init__(self):
        self.model = LinearRegression()
    def fit(self, X, y):
        self.model.fit(X, y)
    def predict(self, X):
        return self.model.predict(X)
"""


def iris_csv():
    if IRIS:
        with open(IRIS) as f:
            return f.read()
    from sklearn.datasets import load_iris
    d = load_iris()
    rows = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    rows += [",".join(map(str, x)) + "," + d.target_names[t] for x, t in zip(d.data, d.target)]
    return "\n".join(rows) + "\n"


def every_fifth(n, k=0):
    return [i for i in range(n) if i % 5 != k], [i for i in range(n) if i % 5 == k]


class FoldCase(unittest.TestCase):
    """A temporary input and output dir, and the runner run on them."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.input = os.path.join(self.tmp.name, "input")
        self.output = os.path.join(self.tmp.name, "output")
        os.makedirs(self.input)
        os.makedirs(self.output)

    def write(self, name, text):
        path = os.path.join(self.input, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text) if name.endswith(".py") else text)

    def fold(self, name="fold.json", **fields):
        self.write(name, json.dumps(fields))

    def run_fold(self, *args, env=None):
        env = dict(os.environ, DATARUN_INPUT=self.input, DATARUN_OUTPUT=self.output, **(env or {}))
        return subprocess.run([sys.executable, RUNNER, *args], env=env, capture_output=True,
                              text=True, timeout=120)

    def out(self, name):
        path = os.path.join(self.output, name)
        if name.endswith(".npy"):
            return np.load(path)
        with open(path) as f:
            return json.load(f)

    def iris_fold(self, classifier=CLASSIFIER, **extra):
        self.write("iris.csv", iris_csv())
        self.write("submission/classifier.py", classifier)
        train, test = every_fifth(150)
        fields = dict(dataset="iris.csv", target_column="species", train_is=train, test_is=test,
                      workflow_elements=["classifier"], submission_dir="submission")
        self.fold(**dict(fields, **extra))
        return test


class FoldTest(FoldCase):
    def test_iris_classifier(self):
        test = self.iris_fold()
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        for phase in ("trained", "validated", "tested"):
            self.assertIn(f"datarun-fold: {phase} in ", p.stdout)
        labels = self.out("labels.json")
        self.assertEqual(labels, ["setosa", "versicolor", "virginica"])
        train_pred, test_pred = self.out("y_pred_train.npy"), self.out("y_pred_test.npy")
        self.assertEqual(train_pred.shape, (150, 3))
        self.assertEqual(test_pred.shape, (30, 3))
        np.testing.assert_allclose(test_pred, train_pred[test])
        species = [line.split(",")[-1] for line in iris_csv().split()[1:]]
        accuracy = np.mean([labels[train_pred[i].argmax()] == species[i] for i in test])
        self.assertGreater(accuracy, 0.9)
        self.assertAlmostEqual(self.out("scores.json")["valid"]["accuracy"], accuracy)
        self.assertEqual(self.out("phases.json"), ["trained", "validated", "tested"])
        with open(os.path.join(self.output, "status")) as f:
            self.assertEqual(f.read(), "tested\n")
        timings = self.out("timings.json")
        self.assertEqual(sorted(timings), ["test", "train", "valid"])
        for t in timings.values():
            self.assertGreaterEqual(t["wall"], 0)
            self.assertGreaterEqual(t["cpu"], 0)

    @unittest.skipUnless(IRIS, "no iris.csv beside the tests")
    def test_iris_csv_is_the_classic_data_set(self):
        from sklearn.datasets import load_iris
        d = load_iris()
        rows = [line.split(",") for line in iris_csv().split()[1:]]
        self.assertEqual(len(rows), 150)
        np.testing.assert_allclose(np.array([r[:4] for r in rows], dtype=float), d.data)
        self.assertEqual([r[4] for r in rows], [d.target_names[t] for t in d.target])

    def test_separate_test_table(self):
        self.iris_fold(test_dataset="test.csv")
        self.write("test.csv", "".join(iris_csv().splitlines(True)[:11]))  # header + 10 rows
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.out("y_pred_test.npy").shape, (10, 3))
        self.assertEqual(self.out("scores.json")["test"]["accuracy"], 1.0)

    def test_broken_fit_exits_1_with_traceback(self):
        self.iris_fold(classifier="""
            class Classifier:
                def fit(self, X, y):
                    raise ValueError("broken on purpose")
                def predict_proba(self, X):
                    return None
            """)
        p = self.run_fold()
        self.assertEqual(p.returncode, 1)
        self.assertIn("Traceback", p.stderr)
        self.assertIn("ValueError: broken on purpose", p.stderr)
        self.assertIn("Classifier.fit failed", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.output, "phases.json")))

    def test_failure_mid_way_shows_phases_done(self):
        self.iris_fold(classifier="""
            class Classifier:
                def fit(self, X, y):
                    pass
                def predict_proba(self, X):
                    return 1 / 0
            """)
        p = self.run_fold()
        self.assertEqual(p.returncode, 1)
        self.assertIn("ZeroDivisionError", p.stderr)
        self.assertEqual(self.out("phases.json"), ["trained"])
        with open(os.path.join(self.output, "status")) as f:
            self.assertEqual(f.read(), "trained\n")
        self.assertEqual(sorted(self.out("timings.json")), ["train"])

    def test_exit_0_from_submission_is_still_a_failure(self):
        self.iris_fold(classifier="""
            import sys
            class Classifier:
                def fit(self, X, y):
                    sys.exit(0)
                def predict_proba(self, X):
                    return None
            """)
        p = self.run_fold()
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("SystemExit", p.stderr)

    def test_import_error_exits_1(self):
        self.iris_fold(classifier="def broken(:\n")
        p = self.run_fold()
        self.assertEqual(p.returncode, 1)
        self.assertIn("SyntaxError", p.stderr)
        self.assertIn("importing classifier.py failed", p.stderr)

    def test_missing_element_file_exits_2(self):
        self.iris_fold()
        os.remove(os.path.join(self.input, "submission/classifier.py"))
        p = self.run_fold()
        self.assertEqual(p.returncode, 2)
        self.assertIn("classifier.py", p.stderr)

    def test_unknown_element_exits_2(self):
        self.iris_fold(workflow_elements=["image_classifier"])
        p = self.run_fold()
        self.assertEqual(p.returncode, 2)
        self.assertIn("image_classifier", p.stderr)
        for known in ("classifier", "feature_extractor", "regressor"):
            self.assertIn(known, p.stderr)

    def regression_data(self, with_name_column=False):
        rng = np.random.RandomState(0)
        X = rng.uniform(-1, 1, size=(200, 2))
        y = 3 * X[:, 0] - 2 * X[:, 1] + 0.5
        header = "name,x1,x2,y\n" if with_name_column else "x1,x2,y\n"
        rows = [(f"r{i}," if with_name_column else "") + f"{a!r},{b!r},{t!r}\n"
                for i, ((a, b), t) in enumerate(zip(X, y))]
        self.write("data.csv", header + "".join(rows))
        return every_fifth(200, k=2)

    def test_regressor(self):
        train, test = self.regression_data()
        self.write("regressor.py", REGRESSOR)
        self.fold(dataset="data.csv", target_column="y", train_is=train, test_is=test,
                  workflow_elements=["regressor"])
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.out("y_pred_train.npy").shape, (200,))
        self.assertEqual(self.out("y_pred_test.npy").shape, (40,))
        self.assertLess(self.out("scores.json")["valid"]["rmse"], 1e-9)
        self.assertFalse(os.path.exists(os.path.join(self.output, "labels.json")))

    def test_feature_extractor_is_applied(self):
        # The raw table has a text column the regressor cannot take; the extractor drops it and
        # turns x1 into x1 * 10, so the fitted coefficient shows the extractor's hand.
        train, test = self.regression_data(with_name_column=True)
        self.write("regressor.py", REGRESSOR)
        self.write("feature_extractor.py", """
            class FeatureExtractor:
                def fit(self, X_df, y):
                    self.columns = ["x1", "x2"]
                def transform(self, X_df):
                    X = X_df[self.columns].values.copy()
                    X[:, 0] *= 10
                    return X
            """)
        self.fold(dataset="data.csv", target_column="y", train_is=train, test_is=test,
                  workflow_elements=["feature_extractor", "regressor"])
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertLess(self.out("scores.json")["valid"]["rmse"], 1e-9)
        # Without the extractor the same fold fails on the text column: the submission's fault.
        os.remove(os.path.join(self.input, "feature_extractor.py"))
        self.fold(dataset="data.csv", target_column="y", train_is=train, test_is=test,
                  workflow_elements=["regressor"])
        self.assertEqual(self.run_fold().returncode, 1)

    def test_calibrator_is_fitted_on_held_out_rows_and_applied(self):
        # The calibrator records what it was fitted on and flips the probability columns, so
        # its hand shows in every prediction (setosa <-> virginica).
        self.iris_fold(workflow_elements=["classifier", "calibrator"])
        self.write("submission/calibrator.py", """
            import json, os
            import numpy as np

            class Calibrator:
                def fit(self, y_proba, y):
                    out = os.path.join(os.environ["DATARUN_OUTPUT"], "calibrator.json")
                    with open(out, "w") as f:
                        json.dump({"shape": list(np.shape(y_proba)), "y": sorted(set(y))}, f)
                def predict_proba(self, y_proba):
                    return np.asarray(y_proba)[:, ::-1]
            """)
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        # 120 training rows: the classifier fits on 108, the calibrator on the stratified 12.
        fitted = self.out("calibrator.json")
        self.assertEqual(fitted["shape"], [12, 3])
        self.assertEqual(fitted["y"], ["setosa", "versicolor", "virginica"])
        self.assertLess(self.out("scores.json")["valid"]["accuracy"], 0.5)
        self.assertEqual(self.out("y_pred_test.npy").shape, (30, 3))

    def test_calibrator_needs_classifier(self):
        train, test = self.regression_data()
        self.write("regressor.py", REGRESSOR)
        self.write("calibrator.py", "class Calibrator: pass\n")
        self.fold(dataset="data.csv", target_column="y", train_is=train, test_is=test,
                  workflow_elements=["regressor", "calibrator"])
        p = self.run_fold()
        self.assertEqual(p.returncode, 2)
        self.assertIn("calibrator needs classifier", p.stderr)

    def test_fold_json_is_found(self):
        self.iris_fold()
        os.rename(os.path.join(self.input, "fold.json"), os.path.join(self.input, "fold-3.json"))
        self.assertEqual(self.run_fold().returncode, 0)  # the single fold-*.json
        with open(os.path.join(self.input, "fold-3.json")) as f:
            self.write("fold-4.json", f.read())
        p = self.run_fold()
        self.assertEqual(p.returncode, 2)  # two candidates: which one?
        self.assertIn("fold-3.json, fold-4.json", p.stderr)
        self.assertEqual(self.run_fold("fold-4.json").returncode, 0)  # named on the command line
        self.assertEqual(self.run_fold(env={"DATARUN_FOLD_JSON": "fold-3.json"}).returncode, 0)
        self.assertEqual(self.run_fold("nope.json").returncode, 2)

    def test_bad_indices_exit_2(self):
        self.iris_fold()
        self.fold(dataset="iris.csv", target_column="species", train_is=[0, 150], test_is=[1],
                  workflow_elements=["classifier"], submission_dir="submission")
        p = self.run_fold()
        self.assertEqual(p.returncode, 2)
        self.assertIn("train_is", p.stderr)


# A problem script over iris.csv: rows i % 5 == 4 are its test set, the others its training set.
PROBLEM = """
import importlib
import os
import numpy as np
import pandas as pd

def read(path, test):
    data = pd.read_csv(os.path.join(path, "iris.csv"))
    data = data[(data.index % 5 == 4) == test]
    return data.drop(columns=["species"]).values, data["species"].values

def get_train_data(path):
    return read(path, False)

def get_test_data(path):
    return read(path, True)

def train_submission(module_path, X, y, train_is):
    assert isinstance(train_is, np.ndarray), type(train_is)
    classifier = importlib.import_module(".classifier", module_path).Classifier()
    classifier.fit(X[train_is], y[train_is])
    return classifier

def test_submission(trained, X, indices):
    return trained.predict_proba(X[list(indices)])
"""
TIMING_KEYS = ["cpu", "cpu_process", "memory_source", "peak_memory", "wall"]
CGROUP_MEMORY = os.path.isfile("/sys/fs/cgroup/memory/memory.usage_in_bytes") or \
    os.path.isfile("/sys/fs/cgroup/memory.current")


def make_read_only(top):
    for d, _, files in os.walk(top):
        for name in files:
            os.chmod(os.path.join(d, name), 0o444)
        os.chmod(d, 0o555)


class ProblemCase(FoldCase):
    """fold.json with "problem": the dataset's problem script loads the data, runs the submission."""

    def problem_fold(self, script=PROBLEM, classifier=CLASSIFIER, **extra):
        self.write("data/iris.csv", iris_csv())
        self.write("data/specific.py", script)
        self.write("submission/classifier.py", classifier)
        train, test = every_fifth(120)
        fields = dict(problem="specific.py", data_dir="data", submission_dir="submission",
                      train_is=train, test_is=test, workflow_elements=["classifier"])
        self.fold(**dict(fields, **extra))
        return train, test


class ProblemModeTest(ProblemCase):
    def test_classifier_on_read_only_inputs(self):
        train, test = self.problem_fold()
        make_read_only(self.input)
        self.addCleanup(lambda: [os.chmod(d, 0o755) for d, _, _ in os.walk(self.input)])
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.out("phases.json"), ["trained", "validated", "tested"])
        labels = self.out("labels.json")
        self.assertEqual(labels, ["setosa", "versicolor", "virginica"])
        train_pred, test_pred = self.out("y_pred_train.npy"), self.out("y_pred_test.npy")
        self.assertEqual(train_pred.shape, (120, 3))
        self.assertEqual(test_pred.shape, (30, 3))
        species = [line.split(",")[-1] for line in iris_csv().split()[1:]]
        y_train = [s for i, s in enumerate(species) if i % 5 != 4]
        y_test = [s for i, s in enumerate(species) if i % 5 == 4]
        valid = np.mean([labels[train_pred[i].argmax()] == y_train[i] for i in test])
        tested = np.mean([labels[p.argmax()] == t for p, t in zip(test_pred, y_test)])
        scores = self.out("scores.json")
        self.assertAlmostEqual(scores["valid"]["accuracy"], valid)
        self.assertAlmostEqual(scores["test"]["accuracy"], tested)
        self.assertGreater(tested, 0.9)
        self.assertGreater(scores["train"]["accuracy"], 0.9)
        timings = self.out("timings.json")
        self.assertEqual(sorted(timings), ["test", "train", "valid"])
        for t in timings.values():
            self.assertEqual(sorted(t), TIMING_KEYS)
        self.assertEqual([], [f for _, _, fs in os.walk(self.input) for f in fs if f.endswith(".pyc")])

    def test_numeric_predictions_score_rmse(self):
        self.problem_fold(script=PROBLEM + """
def read(path, test):
    X = np.arange(50.0).reshape(25, 2)
    return X, X[:, 0] * 2 + (1 if test else 0)

def test_submission(trained, X, indices):
    return X[list(indices), 0] * 2
""", train_is=list(range(20)), test_is=list(range(20, 25)))
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.out("y_pred_train.npy").shape, (25,))
        scores = self.out("scores.json")
        self.assertEqual(scores["valid"], {"rmse": 0.0})
        self.assertAlmostEqual(scores["test"]["rmse"], 1.0)
        self.assertFalse(os.path.exists(os.path.join(self.output, "labels.json")))

    def test_submission_dir_is_a_package_with_any_elements(self):
        # Element names the runner does not know: the problem script imports them.
        self.problem_fold(script=PROBLEM.replace(
            'classifier = importlib.import_module(".classifier", module_path).Classifier()',
            'classifier = importlib.import_module(".my_model", module_path).make()'),
            submission_dir="subs/mine", workflow_elements=["my_model"])
        self.write("subs/mine/my_model.py", """
            from .helper import Classifier
            def make():
                return Classifier()
            """)
        self.write("subs/mine/helper.py", CLASSIFIER)
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertGreater(self.out("scores.json")["test"]["accuracy"], 0.9)

    def test_data_loader_failure_exits_2_with_traceback(self):
        self.problem_fold(script=PROBLEM + """
def get_test_data(path):
    return pd.read_csv(os.path.join(path, "missing.csv"))
""")
        p = self.run_fold()
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("specific.get_test_data(", p.stderr)
        self.assertIn("FileNotFoundError", p.stderr)
        self.assertIn("Traceback", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.output, "phases.json")))

    def test_problem_script_errors_exit_2(self):
        cases = [
            (PROBLEM.replace("def get_test_data", "def get_the_test_data"), "lacks function(s) ['get_test_data']"),
            ("import no_such_module\n", "importing the problem script specific.py failed"),
            (PROBLEM + "\ndef get_train_data(path):\n    return [1, 2, 3]\n", "not a tuple (X, y)"),
            (PROBLEM + "\ndef get_train_data(path):\n    return [1, 2], [1]\n", "2 samples in X but 1 in y"),
        ]
        for problem, message in cases:
            with self.subTest(message):
                self.problem_fold(script=problem)
                p = self.run_fold()
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(message, p.stderr)
        self.problem_fold(script="specific.py")
        os.remove(os.path.join(self.input, "data/specific.py"))
        p = self.run_fold()
        self.assertEqual(p.returncode, 2)
        self.assertIn("problem script specific.py not found", p.stderr)

    def test_bad_fold_exits_2(self):
        cases = [({"train_is": [0, 120]}, "train_is: every index must be an integer in [0, 120)"),
                 ({"test_is": [-1]}, "test_is"),
                 ({"problem": "../specific.py"}, "must be the name of a .py file in data_dir"),
                 ({"submission_dir": "nope"}, "submission dir 'nope' not found"),
                 ({"data_dir": "nope"}, "data dir 'nope' not found")]
        for extra, message in cases:
            with self.subTest(message):
                self.problem_fold(**extra)
                p = self.run_fold()
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(message, p.stderr)

    def test_submission_failure_exits_1(self):
        self.problem_fold(classifier="""
            class Classifier:
                def fit(self, X, y):
                    raise ValueError("broken on purpose")
            """)
        p = self.run_fold()
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("train_submission failed", p.stderr)
        self.assertIn("Traceback", p.stderr)
        self.assertIn("ValueError: broken on purpose", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.output, "phases.json")))

    def test_wrong_number_of_predictions_exits_1(self):
        self.problem_fold(script=PROBLEM + """
def test_submission(trained, X, indices):
    return trained.predict_proba(X[list(indices)])[1:]
""")
        p = self.run_fold()
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("test_submission on the training data returned 119 predictions for 120 samples",
                      p.stderr)
        self.assertEqual(self.out("phases.json"), ["trained"])


# Train allocates BIG_MB (touched, held 0.3 s so the 20 ms sampler sees it) and runs a child
# process that burns CHILD_CPU seconds of CPU; valid and test do neither.
BIG_MB, CHILD_CPU = 200, 2.0
HUNGRY_PROBLEM = PROBLEM + f"""
import subprocess, sys, time

def train_submission(module_path, X, y, train_is):
    if os.environ.get("FAKE_CGROUP"):
        fake(os.environ["FAKE_CGROUP"])
    big = np.ones({BIG_MB} * 2**20 // 8)
    time.sleep(0.3)
    del big
    burn = "import time\\nwhile time.process_time() < {CHILD_CPU}: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    classifier = importlib.import_module(".classifier", module_path).Classifier()
    classifier.fit(X[train_is], y[train_is])
    return classifier

def put(root, name, value):
    with open(os.path.join(root, "memory", name), "w") as f:
        f.write(f"{{value}}\\n")

def fake(root):
    # Train: the current usage reads 3e9 for 0.3 s, then 1e9; the all-time peak stays as it was.
    put(root, "memory.usage_in_bytes", 3000000000)
    time.sleep(0.3)
    put(root, "memory.usage_in_bytes", 1000000000)

def test_submission(trained, X, indices):
    # Valid (the first call): the all-time peak rises to 7e9, the current usage ends at 1.5e9.
    root = os.environ.get("FAKE_CGROUP")
    if root and not os.path.exists(os.path.join(root, "valid-done")):
        put(root, "memory.max_usage_in_bytes", 7000000000)
        put(root, "memory.usage_in_bytes", 1500000000)
        open(os.path.join(root, "valid-done"), "w").close()
    return trained.predict_proba(X[list(indices)])
"""


class ResourcesTest(ProblemCase):
    """timings.json's per-phase cpu, cpu_process and peak_memory."""

    def timings(self, env=None):
        self.problem_fold(script=HUNGRY_PROBLEM)
        p = self.run_fold(env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        timings = self.out("timings.json")
        for t in timings.values():
            self.assertEqual(sorted(t), TIMING_KEYS)
        return timings

    def check_child_cpu(self, timings):
        train = timings["train"]
        # The runner's own CPU (sklearn's import, the fit) is well under the child's.
        self.assertLess(train["cpu_process"], CHILD_CPU * 0.75)
        self.assertGreaterEqual(train["cpu"], train["cpu_process"] + CHILD_CPU * 0.95)
        self.assertLess(timings["valid"]["cpu"], CHILD_CPU / 2)

    @unittest.skipUnless(CGROUP_MEMORY, "no memory cgroup files (not in a container?)")
    def test_cgroup_counts_the_phase_peak_and_children(self):
        timings = self.timings()
        mb = {phase: t["peak_memory"] / 2**20 for phase, t in timings.items()}
        print(f"\npeak memory per phase (MB): {json.dumps({k: round(v) for k, v in mb.items()})}; "
              f"train cpu {timings['train']['cpu']:.2f}s, cpu_process "
              f"{timings['train']['cpu_process']:.2f}s", file=sys.stderr)
        self.assertEqual({t["memory_source"] for t in timings.values()}, {"cgroup"})
        self.assertGreaterEqual(mb["train"], BIG_MB)
        self.assertLess(mb["valid"], mb["train"] - BIG_MB * 0.75)
        self.assertLess(mb["test"], mb["train"] - BIG_MB * 0.75)
        self.check_child_cpu(timings)

    def test_without_cgroup_files_rusage(self):
        timings = self.timings(env={"DATARUN_CGROUP_DIR": os.path.join(self.tmp.name, "none")})
        self.assertEqual({t["memory_source"] for t in timings.values()}, {"rusage"})
        # ru_maxrss is all-time: every phase shows at least the big array.
        for t in timings.values():
            self.assertGreaterEqual(t["peak_memory"], BIG_MB * 2**20)
        self.check_child_cpu(timings)

    def test_sampled_peak_and_new_all_time_peak(self):
        root = os.path.join(self.tmp.name, "cgroup")
        os.makedirs(os.path.join(root, "memory"))
        for name, value in (("memory.usage_in_bytes", 500000000),
                            ("memory.max_usage_in_bytes", 6000000000)):
            with open(os.path.join(root, "memory", name), "w") as f:
                f.write(f"{value}\n")
        timings = self.timings(env={"DATARUN_CGROUP_DIR": root, "FAKE_CGROUP": root})
        self.assertEqual(timings["train"]["peak_memory"], 3000000000)  # sampled by the thread
        self.assertEqual(timings["valid"]["peak_memory"], 7000000000)  # the new all-time peak
        self.assertEqual(timings["test"]["peak_memory"], 1500000000)   # the current usage
        self.assertEqual({t["memory_source"] for t in timings.values()}, {"cgroup"})
        # No cpuacct file there: rusage of the runner and its children.
        self.check_child_cpu(timings)

    def test_builtin_mode_timings(self):
        self.iris_fold()
        p = self.run_fold()
        self.assertEqual(p.returncode, 0, p.stderr)
        for t in self.out("timings.json").values():
            self.assertEqual(sorted(t), TIMING_KEYS)
            self.assertGreater(t["peak_memory"], 10 * 2**20)
            self.assertIn(t["memory_source"], ("cgroup", "rusage"))


if __name__ == "__main__":
    unittest.main()
