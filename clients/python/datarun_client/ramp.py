"""A ramp-engine worker that trains a RAMP submission on datarun, one datarun fold per CV fold.

ramp-board's dispatcher drives a worker through ``setup()``, ``launch_submission()``, polling
``status`` until it leaves ``'running'``, ``collect_results()`` → ``(returncode, error_msg)``
and ``teardown()``. :class:`DatarunWorker` does that against a datarun master: it uploads the
kit, submits one fold per CV fold (``datarun-ramp-fold`` in the fold image, see the README's
"RAMP kits"), which run in parallel across slots and runners, and collects each fold's
``training_output/fold_<k>/`` into the submission's ``training_output`` directory, as
``ramp-test --save-output`` lays it out. When every fold is done it bags them as ``ramp-test``
does after its CV loop (ramp-workflow's own ``bag_submissions`` on the folds' predictions),
writing ``training_output/bagged_scores.csv``, which ramp-board's dispatcher reads
(``set_bagged_scores``); without ramp-workflow it logs a warning and writes no bagged scores.

ramp-engine is not required: the worker inherits from ``ramp_engine.base.BaseWorker`` when it
can be imported, else from a compatible base with the same life cycle.
"""

import contextlib
import io
import json
import logging
import os
import shutil
import time
import traceback

from .client import MAX_EVENT_FOLDS, Client, DatarunError

try:  # pragma: no cover - depends on the environment
    from ramp_engine.base import BaseWorker
except Exception:  # ramp-engine absent (or failing to import): a compatible base

    class BaseWorker:
        """The life cycle of ramp-engine's ``BaseWorker``: ``status`` is 'initialized',
        'setup', 'error', 'running', 'finished' (read while running, once
        ``_is_submission_finished()``), 'collected', 'killed' (after teardown), or 'timeout'."""

        def __init__(self, config, submission):
            self.config = config
            self.submission = submission
            self.status = "initialized"

        @staticmethod
        def _check_config_name(config, param):
            if param not in config.keys():
                raise ValueError(
                    f"The worker requires the parameter '{param}' in its configuration; "
                    f"only {list(config.keys())} were given."
                )

        def setup(self):
            self.status = "setup"

        def teardown(self):
            self.status = "killed"

        def _is_submission_finished(self):
            raise NotImplementedError

        @property
        def status(self):
            if self._status == "running" and self._is_submission_finished():
                self._status = "finished"
            return self._status

        @status.setter
        def status(self, status):
            self._status = status

        def check_timeout(self):
            pass

        def launch_submission(self):
            self.status = "running"

        def collect_results(self):
            if self.status == "initialized":
                raise ValueError(
                    "The worker has not been set up and no submission was launched: call "
                    "setup() and launch_submission() before collect_results()."
                )
            if self.status == "setup":
                raise ValueError(
                    "No submission was launched: call launch_submission() before "
                    "collect_results()."
                )

        def launch(self):
            self.setup()
            self.launch_submission()
            self.collect_results()
            self.teardown()

        def __repr__(self):
            return f'{type(self).__name__}({self.submission}): status="{self.status}"'

        __str__ = __repr__


logger = logging.getLogger(__name__)

STOPPED = ("done", "failed", "removed", "held")
#: ramp-board's dispatcher knows two failure codes: 1 (training error) and 124 (timeout).
TRAINING_ERROR = 1
TIMEOUT = 124


def _files_under(root, rel, skip_dirs=("training_output", "__pycache__", ".git")):
    """Relative paths (with '/') of the files under root/rel, sorted."""
    out = []
    base = os.path.join(root, rel)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            out.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return out


def _traceback(log):
    """From the last ``Traceback`` of a log on (ramp-engine keeps from the first one)."""
    at = log.rfind("Traceback (most recent call last)")
    if at < 0:
        at = log.find("Traceback")
    return log[at:] if at >= 0 else ""


@contextlib.contextmanager
def _ramp_test_mode(on):
    """RAMP_TEST_MODE=1 while reading the data, as ``ramp-test --quick-test`` sets it."""
    if not on:
        yield
        return
    before = os.environ.get("RAMP_TEST_MODE")
    os.environ["RAMP_TEST_MODE"] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ["RAMP_TEST_MODE"]
        else:
            os.environ["RAMP_TEST_MODE"] = before


def bag_training_output(kit_dir, training_output, data_dir=None, data_label=None,
                        quick_test=False):
    """Bags the CV folds under ``training_output`` (its ``fold_<k>/y_pred_{train,test}.npz``)
    as ``ramp-test --save-output`` does after its CV loop, and returns ramp's printout.

    It makes the calls ``rampwf.utils.testing.assert_submission`` makes: ``problem`` from
    ``assert_read_problem(kit_dir)``, ``y_train``/``y_test`` from ``assert_data`` and ``cv`` from
    ``assert_cv`` (with ``data_dir``, default ``kit_dir``, and ``data_label``), each fold's
    ``problem.Predictions(y_pred=y_pred_train, fold_is=valid_is)`` and
    ``problem.Predictions(y_pred=y_pred_test)`` (read back with ramp's ``load_y_pred``), then
    ``bag_submissions(..., score_type_index=None, save_output=True)``, which writes
    ``training_output/bagged_scores.csv`` (index ``step``, ``n_bag``; one column per score type)
    and calls the kit's ``save_submission`` if it has one. ``training_output`` is where ramp-test
    would put it: ``<submission>/training_output[/<data_label>]``.

    Raises ImportError when ramp-workflow cannot be imported, and whatever ramp raises (the kit
    failing to load or to read its data, a fold's predictions missing).
    """
    from rampwf.utils.io import load_y_pred
    from rampwf.utils.submission import bag_submissions
    from rampwf.utils.testing import assert_cv, assert_data, assert_read_problem

    data_dir = data_dir or kit_dir
    printout = io.StringIO()
    with contextlib.redirect_stdout(printout), _ramp_test_mode(quick_test):
        problem = assert_read_problem(kit_dir)
        _, y_train, _, y_test = assert_data(kit_dir, data_dir, data_label)
        cv = assert_cv(kit_dir, data_dir, data_label)
        predictions_valid_list, predictions_test_list = [], []
        for k, (_, valid_is) in enumerate(cv):
            fold_dir = os.path.join(training_output, f"fold_{k}")
            y_pred_train = load_y_pred(problem, data_path=data_dir, input_path=fold_dir,
                                       suffix="train")
            predictions_valid_list.append(problem.Predictions(y_pred=y_pred_train,
                                                              fold_is=valid_is))
            if y_test is None:
                predictions_test_list.append(None)
            else:
                y_pred_test = load_y_pred(problem, data_path=data_dir, input_path=fold_dir,
                                          suffix="test")
                predictions_test_list.append(problem.Predictions(y_pred=y_pred_test))
        bag_submissions(
            problem, cv, y_train, y_test, predictions_valid_list, predictions_test_list,
            training_output, ramp_data_dir=data_dir, score_type_index=None, save_output=True)
    return printout.getvalue()


class DatarunWorker(BaseWorker):
    """Trains one RAMP submission on a datarun master.

    ``config`` takes ramp-engine's worker keys:

    * ``kit_dir``: the kit (``problem.py`` and any other top-level ``*.py``, and
      ``external_imports/`` if present, are sent);
    * ``data_dir``: the directory holding ``data/`` (default: ``kit_dir``);
    * ``submissions_dir``: holds ``<submission>/`` (default: ``kit_dir/submissions``);
      results are written to ``<submissions_dir>/<submission>/training_output/``;
    * ``logs_dir`` (optional): the folds' logs go to ``<logs_dir>/<submission>/log``;
    * ``predictions_dir`` (optional): on success, ``training_output`` is copied to
      ``<predictions_dir>/<submission>`` (what ramp-board's dispatcher reads), and teardown
      removes the submission's ``training_output`` as ramp-engine's conda worker does;
    * ``timeout`` (seconds, default 7200): each fold's hard time limit;

    and datarun's:

    * ``n_folds`` (required): how many folds the kit's ``get_cv`` makes;
    * ``datarun_url``, ``datarun_token`` (default: $DATARUN_URL/$DATARUN_TOKEN, then the
      master's data directory, as :class:`Client`), or ``client``: a :class:`Client`;
    * ``image`` (default ``datarun/fold-python:0.1``), ``memory`` (default ``"1G"``),
      ``cpus`` (1), ``priority``, ``queue``, ``data_label``, ``quick_test``.

    The worker follows its folds on the master's events (``Client.events``): ``status`` asks
    only for what changed since it last looked, and ``collect_results`` waits on long polls
    that return when a fold changes, never on a timer (``poll_interval`` is ignored).

    After a successful collect, ``bagged_scores`` is the path of the ``bagged_scores.csv``
    written, or None when bagging was skipped (ramp-workflow not importable, or bagging failed:
    both logged as warnings on the ``datarun_client.ramp`` logger).
    """

    def __init__(self, config, submission):
        super().__init__(config, submission)
        self.fold_ids = []
        # The folds' states as their events told, and where the event log was read up to.
        self._states = {}
        self._seq = None
        self.fold_scores = {}
        self.bagged_scores = None

    # ---- set up -----------------------------------------------------------------------------

    def setup(self):
        for param in ("kit_dir", "n_folds"):
            self._check_config_name(self.config, param)
        try:
            self.n_folds = int(self.config["n_folds"])
            if self.n_folds < 1:
                raise ValueError
        except (TypeError, ValueError):
            self.status = "error"
            raise ValueError(f"n_folds: a positive integer, got {self.config['n_folds']!r}")
        self.kit_dir = self.config["kit_dir"]
        self.data_dir = self.config.get("data_dir") or self.kit_dir
        self.submissions_dir = self.config.get("submissions_dir") or os.path.join(
            self.kit_dir, "submissions"
        )
        self.submission_dir = os.path.join(self.submissions_dir, self.submission)
        if not os.path.isfile(os.path.join(self.kit_dir, "problem.py")):
            self.status = "error"
            raise ValueError(f"kit_dir: no problem.py in {self.kit_dir}")
        if not os.path.isdir(self.submission_dir):
            self.status = "error"
            raise ValueError(f"no submission directory {self.submission_dir}")
        self.client = self.config.get("client") or Client(
            self.config.get("datarun_url"), self.config.get("datarun_token")
        )
        self._log_dir = None
        if self.config.get("logs_dir"):
            self._log_dir = os.path.join(self.config["logs_dir"], self.submission)
            os.makedirs(self._log_dir, exist_ok=True)
        super().setup()

    def _inputs(self):
        """(name in the fold's input dir, local path) of every file the folds need."""
        files = []
        for name in sorted(os.listdir(self.kit_dir)):
            if name.endswith(".py") and os.path.isfile(os.path.join(self.kit_dir, name)):
                files.append((name, os.path.join(self.kit_dir, name)))
        if os.path.isdir(os.path.join(self.kit_dir, "external_imports")):
            for rel in _files_under(self.kit_dir, "external_imports"):
                files.append((rel, os.path.join(self.kit_dir, rel)))
        data = _files_under(self.data_dir, "data")
        if not data:
            raise ValueError(f"data_dir: no files under {os.path.join(self.data_dir, 'data')}")
        files += [(rel, os.path.join(self.data_dir, rel)) for rel in data]
        for rel in _files_under(self.submissions_dir, self.submission):
            files.append((f"submissions/{rel}", os.path.join(self.submissions_dir, rel)))
        return files

    # ---- launch -----------------------------------------------------------------------------

    def launch_submission(self):
        if self.status == "running":
            raise ValueError("Wait until the submission is processed before launching a new one.")
        inputs = [
            {"name": name, "sha256": self.client.put_blob(path)} for name, path in self._inputs()
        ]
        specs = []
        for k in range(self.n_folds):
            fold = {"submission": self.submission, "fold": k}
            if self.config.get("data_label"):
                fold["data_label"] = self.config["data_label"]
            if self.config.get("quick_test"):
                fold["quick_test"] = True
            sha = self.client.put_blob(json.dumps(fold).encode())
            spec = {
                "command": ["datarun-ramp-fold"],
                "image": self.config.get("image", "datarun/fold-python:0.1"),
                "inputs": inputs + [{"name": "ramp-fold.json", "sha256": sha}],
                "resources": {
                    "cpus": self.config.get("cpus", 1),
                    "memory": self.config.get("memory", "1G"),
                },
                "hard_time_limit": f"{int(self.config.get('timeout', 7200))}s",
            }
            for key in ("priority", "queue"):
                if self.config.get(key) is not None:
                    spec[key] = self.config[key]
            specs.append(spec)
        # Where the event log stands before the folds exist: all their events come after it.
        self._seq = self.client.events(timeout=0)["seq"]
        answer = self.client.submit_folds(specs)
        self.fold_ids = answer["ids"]
        self._states = {}
        self._launched_at = time.monotonic()
        if self._log_dir:
            with open(os.path.join(self._log_dir, "datarun.json"), "w") as f:
                json.dump({"url": self.client.url, "fold_ids": self.fold_ids}, f)
        super().launch_submission()

    def _follow(self, wait):
        """Reads the folds' events since the last read: one long poll of up to ``wait``
        seconds (0: what is there now), returning as soon as one of the folds changes.
        Returns whether every fold stopped (done, failed, removed or held)."""
        going = [i for i in self.fold_ids if self._states.get(i) not in STOPPED]
        if not going:
            return True
        watch = going if len(going) <= MAX_EVENT_FOLDS else None
        page = self.client.events(self._seq, watch, timeout=wait)
        for e in page["events"]:
            if e.get("state") and e.get("fold") in self.fold_ids:
                self._states[e["fold"]] = e["state"]
        self._seq = page["seq"]
        return all(self._states.get(i) in STOPPED for i in self.fold_ids)

    def _is_submission_finished(self):
        return self._follow(0)

    # ---- collect ----------------------------------------------------------------------------

    def _training_output(self):
        return os.path.join(self.submission_dir, "training_output")

    def _bag(self, out_dir, logs):
        """Writes ``bagged_scores.csv`` as ramp-test does, if ramp-workflow is importable; a
        missing ramp-workflow or a failing bagging is a warning, not a failed submission (every
        fold was scored). Appends ramp's printout (or why not) to ``logs``."""
        label = self.config.get("data_label")
        bag_dir = os.path.join(out_dir, label) if label else out_dir
        target = os.path.join(bag_dir, "bagged_scores.csv")
        try:
            import rampwf
        except Exception as e:
            msg = (f"DatarunWorker({self.submission}): ramp-workflow (rampwf) cannot be imported "
                   f"({type(e).__name__}: {e}): bagging skipped, {target} not written; "
                   f"ramp-board's dispatcher reads it (set_bagged_scores)")
            logger.warning(msg)
            logs.append(f"==> bagged scores: skipped <==\n{msg}\n")
            return
        try:
            printout = bag_training_output(
                self.kit_dir, bag_dir, data_dir=self.data_dir, data_label=label,
                quick_test=bool(self.config.get("quick_test")))
        except (Exception, SystemExit):
            msg = (f"DatarunWorker({self.submission}): bagging the folds with ramp-workflow "
                   f"{getattr(rampwf, '__version__', '?')} failed, {target} not written:\n"
                   f"{traceback.format_exc()}")
            logger.warning(msg)
            logs.append(f"==> bagged scores: failed <==\n{msg}")
            return
        self.bagged_scores = target
        logs.append(f"==> bagged scores (ramp-workflow {rampwf.__version__}) <==\n{printout}")

    def collect_results(self):
        """Blocks until every fold stopped, writes their ``training_output/`` files and logs,
        when every fold was done bags them into ``training_output/bagged_scores.csv`` (as
        ``ramp-test --save-output``; skipped with a warning without ramp-workflow), and returns
        ``(returncode, error_msg)``: 0 when every fold was done; 124 when one hit its time
        limit; else 1 (the submission failed, the kit is bad, a fold was held or
        removed), with the first failing fold's traceback (or reason) as the message."""
        super().collect_results()
        if self.status == "collected":
            raise ValueError("The results were collected already.")
        while self.status == "running":
            self._follow(30)
        details = [self.client.fold(i) for i in self.fold_ids]
        out_dir = self._training_output()
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        logs = []
        returncode, error_msg = 0, ""
        for k, (fold_id, d) in enumerate(zip(self.fold_ids, details)):
            fold = d["fold"]
            attempts = d.get("attempts") or []
            names = [o["name"] for o in (attempts[-1].get("outputs") or [])] if attempts else []
            for name in names:
                if not name.startswith("training_output/"):
                    continue
                dest = os.path.join(self.submission_dir, *name.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "wb") as f:
                    f.write(self.client.fold_output(fold_id, name))
            if "scores.json" in names:
                self.fold_scores[k] = json.loads(self.client.fold_output(fold_id, "scores.json"))
            log = self.client.fold_log(fold_id)
            logs.append(f"==> datarun fold {fold_id} (CV fold {k}): {fold['state']} <==\n{log}")
            if fold["state"] == "done" or returncode:
                continue
            outcome = fold.get("outcome") or {}
            if outcome.get("kind") in ("timed_out_soft", "timed_out_hard"):
                returncode = TIMEOUT
            else:
                returncode = TRAINING_ERROR
            why = fold.get("reason") or outcome.get("kind") or fold["state"]
            error_msg = _traceback(log) or f"datarun fold {fold_id} (CV fold {k}) {fold['state']}: {why}"
            if returncode == TIMEOUT:
                error_msg += f"\nFold killed at its time limit ({self.config.get('timeout', 7200)}s)."
        self.bagged_scores = None
        if returncode == 0:
            self._bag(out_dir, logs)
        if self._log_dir:
            with open(os.path.join(self._log_dir, "log"), "w") as f:
                f.write("\n".join(logs))
        pred_dir = self.config.get("predictions_dir")
        if pred_dir:
            pred_dir = os.path.join(pred_dir, self.submission)
            if os.path.exists(pred_dir):
                shutil.rmtree(pred_dir)
            if returncode == 0:
                shutil.copytree(out_dir, pred_dir)
        self.returncode, self.error_msg = returncode, error_msg
        self.status = "collected"
        return returncode, error_msg

    # ---- tear down --------------------------------------------------------------------------

    def teardown(self):
        """Removes the folds still queued or running (a worker killed before collecting), and,
        when ``predictions_dir`` holds the results, the submission's ``training_output``."""
        if self._status != "collected":
            for fold_id in self.fold_ids:
                try:
                    self.client.remove_fold(fold_id)
                except DatarunError:
                    pass
        if self.config.get("predictions_dir") and os.path.exists(self._training_output()):
            shutil.rmtree(self._training_output())
        super().teardown()
