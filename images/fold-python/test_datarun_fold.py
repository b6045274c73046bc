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


class FoldTest(unittest.TestCase):
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


if __name__ == "__main__":
    unittest.main()
