"""Tests of datarun-prepare, and of the text example (examples/text_problem) run end to end:
datarun-prepare makes its split, datarun-fold runs a submission on it in problem mode. They need
numpy and scikit-learn, so they run inside the image:

    docker run --rm --network none -w /opt/datarun datarun/fold-python:0.1 \
        python3 -m unittest test_datarun_prepare

(images/build-fold-python.sh does this after every build.) The runners run as child processes on
temporary input dirs made read-only, as in a container.
"""
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def find(env, *paths):
    return next((p for p in (os.environ.get(env), *paths) if p and os.path.exists(p)), None)


PREPARE = find("DATARUN_PREPARE_BIN", "/usr/local/bin/datarun-prepare", os.path.join(HERE, "datarun-prepare"))
FOLD = find("DATARUN_FOLD_BIN", "/usr/local/bin/datarun-fold", os.path.join(HERE, "datarun-fold"))
TEXT_EXAMPLE = find("DATARUN_TEXT_EXAMPLE", "/opt/datarun/text_problem",
                    os.path.join(HERE, "../../examples/text_problem"))

# prepare_data: splits data.csv into train.csv / test.csv, rewrites notes.txt, adds new/more.txt
# and a __pycache__; other.txt and sub/same.txt stay as they came.
PROBLEM = """
import os
import numpy as np

def prepare_data(path):
    with open(os.path.join(path, "data.csv")) as f:
        rows = f.read().split()
    with open(os.path.join(path, "train.csv"), "w") as f:
        f.write("\\n".join(rows[:6]) + "\\n")
    with open(os.path.join(path, "test.csv"), "w") as f:
        f.write("\\n".join(rows[6:]) + "\\n")
    with open(os.path.join(path, "notes.txt"), "a") as f:
        f.write("split made\\n")
    os.makedirs(os.path.join(path, "new"))
    with open(os.path.join(path, "new", "more.txt"), "w") as f:
        f.write("x\\n")
    os.makedirs(os.path.join(path, "__pycache__"))
    with open(os.path.join(path, "__pycache__", "specific.cpython-311.pyc"), "wb") as f:
        f.write(b"junk")

def read(path, name):
    with open(os.path.join(path, name)) as f:
        rows = [line.split(",") for line in f.read().split()]
    return [r[0] for r in rows], np.array([float(r[1]) for r in rows])

def get_train_data(path):
    return read(path, "train.csv")

def get_test_data(path):
    return read(path, "test.csv")
"""
DATA = "a,1\nb,2\nc,1\nd,nan\ne,3\nf,2\ng,5\nh,nan\n"


def make_read_only(top):
    for d, _, files in os.walk(top):
        for name in files:
            os.chmod(os.path.join(d, name), 0o444)
        os.chmod(d, 0o555)


def make_writable(top):
    for d, _, _ in os.walk(top):
        os.chmod(d, 0o755)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def files_under(top):
    return sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs)


class Case(unittest.TestCase):
    def setUp(self):
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        self.tmp = tmp.name
        self.input = os.path.join(self.tmp, "input")
        self.output = os.path.join(self.tmp, "output")
        os.makedirs(self.input)
        os.makedirs(self.output)
        self.addCleanup(make_writable, self.tmp)

    def write(self, name, text, top=None):
        path = os.path.join(top or self.input, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text) if name.endswith(".py") else text)

    def run_tool(self, tool, *args, input=None, output=None):
        env = dict(os.environ, DATARUN_INPUT=input or self.input, DATARUN_OUTPUT=output or self.output)
        return subprocess.run([sys.executable, tool, *args], env=env, capture_output=True,
                              text=True, timeout=300)

    def json(self, *path):
        with open(os.path.join(*path)) as f:
            return json.load(f)


class PrepareTest(Case):
    def dataset(self, script=PROBLEM, **desc):
        self.write("data/specific.py", script)
        self.write("data/data.csv", DATA)
        self.write("data/notes.txt", "notes\n")
        self.write("data/other.txt", "unchanged\n")
        self.write("data/sub/same.txt", "unchanged too\n")
        self.write("prepare.json", json.dumps(dict({"data_dir": "data", "problem": "specific.py"}, **desc)))

    def test_split_truth_and_only_new_files(self):
        self.dataset()
        make_read_only(self.input)
        p = self.run_tool(PREPARE)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("datarun-prepare: truth.json: 6 training and 2 test samples", p.stdout)
        truth = self.json(self.output, "truth.json")
        self.assertEqual(truth, {"n_train": 6, "n_test": 2,
                                 "y_train": [1.0, 2.0, 1.0, None, 3.0, 2.0], "y_test": [5.0, None],
                                 "labels": [1.0, 2.0, 3.0, None]})  # np.unique sorts NaN last
        data = os.path.join(self.output, "data")
        self.assertEqual(files_under(data), ["new/more.txt", "notes.txt", "test.csv", "train.csv"])
        with open(os.path.join(data, "notes.txt")) as f:
            self.assertEqual(f.read(), "notes\nsplit made\n")
        with open(os.path.join(data, "train.csv")) as f:
            self.assertEqual(f.read(), "a,1\nb,2\nc,1\nd,nan\ne,3\nf,2\n")
        self.assertEqual(files_under(self.input), ["data/data.csv", "data/notes.txt", "data/other.txt",
                                                   "data/specific.py", "data/sub/same.txt", "prepare.json"])

    def test_description_is_found(self):
        self.dataset()
        os.rename(os.path.join(self.input, "prepare.json"), os.path.join(self.input, "split.json"))
        p = self.run_tool(PREPARE)
        self.assertEqual(p.returncode, 2)
        self.assertIn("prepare.json", p.stderr)
        self.assertEqual(self.run_tool(PREPARE, "split.json").returncode, 0)

    def test_string_labels(self):
        self.dataset(script=PROBLEM.replace("np.array([float(r[1]) for r in rows])",
                                             "np.array(['c' + r[1] for r in rows])"))
        p = self.run_tool(PREPARE)
        self.assertEqual(p.returncode, 0, p.stderr)
        truth = self.json(self.output, "truth.json")
        self.assertEqual(truth["y_test"], ["c5", "cnan"])
        self.assertEqual(truth["labels"], ["c1", "c2", "c3", "cnan"])

    def test_problem_script_failures_exit_2(self):
        cases = [
            (PROBLEM + "\ndef prepare_data(path):\n    raise OSError('no room at ' + path)\n",
             ["specific.prepare_data(", "failed (OSError: no room at ", "Traceback", "in prepare_data"]),
            (PROBLEM + "\ndef get_test_data(path):\n    return read(path, 'nope.csv')\n",
             ["specific.get_test_data(", "FileNotFoundError", "Traceback"]),
            (PROBLEM.replace("def get_train_data", "def get_the_train_data"),
             ["the problem script specific.py lacks function(s) ['get_train_data']"]),
            ("import no_such_module\n",
             ["importing the problem script specific.py failed (ModuleNotFoundError", "Traceback"]),
            (PROBLEM + "\ndef get_train_data(path):\n    return [1, 2], [1, 2, 3]\n",
             ["get_train_data(", "returned 2 samples in X but 3 in y"]),
            (PROBLEM + "\ndef get_train_data(path):\n    return {'X': 1}\n", ["not a tuple (X, y)"]),
        ]
        for problem, messages in cases:
            with self.subTest(messages[0]):
                shutil.rmtree(self.output, ignore_errors=True)
                self.dataset(script=problem)
                p = self.run_tool(PREPARE)
                self.assertEqual(p.returncode, 2, p.stderr)
                for m in messages:
                    self.assertIn(m, p.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.output, "truth.json")))

    def test_bad_inputs_exit_2(self):
        cases = [({"problem": "../specific.py"}, "must be the name of a .py file in data_dir"),
                 ({"problem": "missing.py"}, "problem script missing.py not found"),
                 ({"problem": 3}, "'problem' must be a non-empty string"),
                 ({"data_dir": "nope"}, "data dir 'nope' not found")]
        for desc, message in cases:
            with self.subTest(message):
                shutil.rmtree(self.output, ignore_errors=True)
                self.dataset(**desc)
                p = self.run_tool(PREPARE)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(message, p.stderr)
        self.dataset()
        self.write("data/x", "left over", top=self.output)
        p = self.run_tool(PREPARE)
        self.assertEqual(p.returncode, 2)
        self.assertIn("already exists and is not an empty dir", p.stderr)


@unittest.skipUnless(TEXT_EXAMPLE, "examples/text_problem not found")
class TextExampleTest(Case):
    """examples/text_problem end to end: datarun-prepare, then datarun-fold in problem mode."""

    def example(self, *path):
        return os.path.join(TEXT_EXAMPLE, *path)

    def test_make_data_reproduces_docs_jsonl(self):
        p = subprocess.run([sys.executable, self.example("make_data.py"), "--out", self.tmp],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(filecmp.cmp(os.path.join(self.tmp, "docs.jsonl"), self.example("docs.jsonl"),
                                    shallow=False))

    def prepare(self):
        os.makedirs(os.path.join(self.input, "data"))
        for name in ("docs.jsonl", "specific.py"):
            shutil.copy(self.example(name), os.path.join(self.input, "data", name))
        self.write("prepare.json", json.dumps({"data_dir": "data", "problem": "specific.py"}))
        make_read_only(self.input)
        p = self.run_tool(PREPARE)
        self.assertEqual(p.returncode, 0, p.stderr)
        return self.json(self.output, "truth.json")

    def fold_input(self, submission, truth):
        """The fold's inputs: the dataset, the split's files, the submission, fold.json."""
        fold_in = os.path.join(self.tmp, f"fold-{submission}")
        os.makedirs(os.path.join(fold_in, "data"))
        for top in (self.input, self.output):  # the split's files win on a name clash
            for name in files_under(os.path.join(top, "data")):
                shutil.copyfile(os.path.join(top, "data", name), os.path.join(fold_in, "data", name))
        shutil.copytree(self.example("submissions", submission), os.path.join(fold_in, "submission"))
        n = truth["n_train"]
        self.write("fold.json", json.dumps({
            "problem": "specific.py", "data_dir": "data", "submission_dir": "submission",
            "train_is": [i for i in range(n) if i % 5], "test_is": [i for i in range(n) if i % 5 == 0],
            "workflow_elements": ["vectorizer", "classifier"]}), top=fold_in)
        make_read_only(fold_in)
        fold_out = os.path.join(self.tmp, f"out-{submission}")
        os.makedirs(fold_out)
        return fold_in, fold_out

    def test_prepare_then_fold(self):
        truth = self.prepare()
        data = os.path.join(self.output, "data")
        self.assertEqual(files_under(data), ["test.jsonl", "train.jsonl"])
        docs = read_jsonl(self.example("docs.jsonl"))
        split = {name: read_jsonl(os.path.join(data, name)) for name in ("train.jsonl", "test.jsonl")}
        # The split is a permutation of the 300 documents, 80/20, and truth.json matches it.
        self.assertEqual((len(docs), truth["n_train"], truth["n_test"]), (300, 240, 60))
        self.assertEqual(sorted(map(json.dumps, split["train.jsonl"] + split["test.jsonl"])),
                         sorted(map(json.dumps, docs)))
        self.assertEqual(truth["y_train"], [d["topic"] for d in split["train.jsonl"]])
        self.assertEqual(truth["y_test"], [d["topic"] for d in split["test.jsonl"]])
        self.assertEqual(truth["labels"], ["astronomy", "cooking", "football"])

        fold_in, fold_out = self.fold_input("good", truth)
        p = self.run_tool(FOLD, input=fold_in, output=fold_out)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.json(fold_out, "phases.json"), ["trained", "validated", "tested"])
        labels = self.json(fold_out, "labels.json")
        self.assertEqual(labels, truth["labels"])
        pred_train = np.load(os.path.join(fold_out, "y_pred_train.npy"))
        pred_test = np.load(os.path.join(fold_out, "y_pred_test.npy"))
        self.assertEqual(pred_train.shape, (240, 3))
        self.assertEqual(pred_test.shape, (60, 3))
        accuracy = np.mean(np.array(labels)[pred_test.argmax(axis=1)] == np.array(truth["y_test"]))
        print(f"\ntext example, good submission: test accuracy {accuracy:.3f}", file=sys.stderr)
        self.assertGreater(accuracy, 0.9)
        self.assertAlmostEqual(self.json(fold_out, "scores.json")["test"]["accuracy"], accuracy)
        self.assertEqual(sorted(self.json(fold_out, "timings.json")), ["test", "train", "valid"])

        fold_in, fold_out = self.fold_input("broken", truth)
        p = self.run_tool(FOLD, input=fold_in, output=fold_out)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("datarun-fold: train_submission failed", p.stderr)
        self.assertIn("Traceback (most recent call last)", p.stderr)
        self.assertIn('submission/classifier.py", line 3, in fit', p.stderr)
        self.assertIn("RuntimeError: this text classifier is broken on purpose", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(fold_out, "phases.json")))


if __name__ == "__main__":
    unittest.main()
