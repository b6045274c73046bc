"""A ramp-engine worker that trains a RAMP submission on datarun, one datarun fold per CV fold.

ramp-engine's dispatcher (``ramp_engine.Dispatcher``) drives a worker through ``setup()``,
``launch_submission()``, polling ``status`` (and ``time_since_last_status_check()``) until it
leaves ``'running'`` (``'finished'``, or ``'retry'`` when ``_is_submission_interrupted()``),
``collect_results()`` → ``(returncode, error_msg)`` and ``teardown()``. :class:`DatarunWorker`
does that against a datarun master: it reads the fold count from the kit's own ``get_cv`` (as
``ramp-test`` does), uploads the kit, submits one fold per CV fold (``datarun-ramp-fold`` in the
fold image, see the README's "RAMP kits"), which run in parallel across slots and runners,
stops the other folds as soon as one fails with the submission's own error, and collects each
fold's ``training_output/fold_<k>/`` into the submission's ``training_output`` directory, as
``ramp-test --save-output`` lays it out. One more fold, in the same image, submitted with the
CV folds and waiting on the master for their predictions, starts as soon as the last is done,
bags them as ``ramp-test`` does after its CV loop (ramp-workflow's ``bag_submissions``) and
writes ``training_output/bagged_scores.csv``, which the dispatcher reads
(``set_bagged_scores``): bagged and fold scores come from the same library versions.

``DatarunWorker`` is a subclass of ramp-engine's own ``ramp_engine.base.BaseWorker``: with
ramp-engine installed (with or without ramp-database and ramp-utils, which its package
``__init__`` imports but ``base.py`` does not need) it is that class; without ramp-engine,
creating a ``DatarunWorker`` raises ImportError saying so. The worker's process needs
ramp-workflow and the kit's imports to read ``get_cv``, as a ramp-board deployment has them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import os
import shutil
import sys
import time
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from .client import MAX_EVENT_FOLDS, Client, DatarunError
from .types import JSON


def _load_base_worker() -> Tuple[Any, Optional[str]]:
    """(ramp-engine's ``BaseWorker``, None), or (None, why it cannot be had).

    ``ramp_engine/__init__.py`` imports the dispatcher and every worker (ramp-database,
    ramp-utils, boto3...), while ``ramp_engine/base.py`` needs only the standard library: when
    the package cannot be imported for want of those, ``base.py`` is loaded from the installed
    package by itself, so the class is ramp-engine's own either way."""
    try:
        from ramp_engine.base import BaseWorker

        return BaseWorker, None
    except Exception as e:  # ImportError, or whatever else the package's __init__ raised
        why = f"{type(e).__name__}: {e}"
    name = "ramp_engine.base"
    loaded = sys.modules.get(name)  # imported before the package's __init__ failed
    if loaded is not None and hasattr(loaded, "BaseWorker"):
        return loaded.BaseWorker, None
    try:
        spec = importlib.util.find_spec("ramp_engine")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = next((os.path.join(d, "base.py") for d in locations
                 if os.path.isfile(os.path.join(d, "base.py"))), None)
    if path is None:
        return None, why
    base_spec = importlib.util.spec_from_file_location(name, path)
    if base_spec is None or base_spec.loader is None:
        return None, why
    module = importlib.util.module_from_spec(base_spec)
    base_spec.loader.exec_module(module)
    sys.modules.setdefault(name, module)
    return module.BaseWorker, None


_LoadedBase, _MISSING = _load_base_worker()


class _NoBaseWorker:
    """Stands in for ramp-engine's BaseWorker when ramp-engine is not installed: creating
    a worker raises ImportError (there is no look-alike base class)."""

    def __init__(self, config: Dict[str, Any], submission: str) -> None:
        raise ImportError(
            "DatarunWorker is a ramp-engine worker and ramp-engine is not installed "
            f"({_MISSING}): pip install ramp-engine==0.10.1 (the version it is tested with)"
        )


if TYPE_CHECKING:

    class _BaseWorker:
        """What DatarunWorker uses of ramp-engine's BaseWorker (which has no type hints)."""

        config: Dict[str, Any]
        submission: str
        status: str
        _status: str

        def __init__(self, config: Dict[str, Any], submission: str) -> None: ...
        def setup(self) -> None: ...
        def launch_submission(self) -> None: ...
        def collect_results(self) -> Any: ...
        def teardown(self) -> None: ...
        @staticmethod
        def _check_config_name(config: Dict[str, Any], name: str) -> None: ...

else:
    _BaseWorker = _LoadedBase if _LoadedBase is not None else _NoBaseWorker


logger = logging.getLogger(__name__)

STOPPED = ("done", "failed", "removed", "held")
#: ramp-board's dispatcher knows two failure codes: 1 (training error) and 124 (timeout).
TRAINING_ERROR = 1
TIMEOUT = 124


def _files_under(
    root: str, rel: str, skip_dirs: Sequence[str] = ("training_output", "__pycache__", ".git")
) -> List[str]:
    """Relative paths (with '/') of the files under root/rel, sorted."""
    out = []
    base = os.path.join(root, rel)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            out.append(os.path.relpath(full, root).replace(os.sep, "/"))
    return out


def _traceback(log: str) -> str:
    """From the last ``Traceback`` of a log on (ramp-engine keeps from the first one)."""
    at = log.rfind("Traceback (most recent call last)")
    if at < 0:
        at = log.find("Traceback")
    return log[at:] if at >= 0 else ""


@contextlib.contextmanager
def _ramp_test_mode(on: bool) -> Iterator[None]:
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


def kit_cv(
    kit_dir: str,
    data_dir: Optional[str] = None,
    data_label: Optional[str] = None,
    quick_test: bool = False,
) -> List[Tuple[Any, Any]]:
    """The kit's CV folds as ``ramp-test`` gets them: ramp-workflow's ``assert_cv(kit_dir,
    data_dir, data_label)`` (the kit's ``get_cv`` on its training data; ``RAMP_TEST_MODE=1``
    for ``quick_test``), a list of ``(train_is, valid_is)``. Its printout is swallowed.
    Raises ImportError without ramp-workflow, and whatever the kit raises."""
    from rampwf.utils.testing import assert_cv

    with contextlib.redirect_stdout(io.StringIO()), _ramp_test_mode(quick_test):
        return list(assert_cv(kit_dir, data_dir or kit_dir, data_label))


def cv_digest(train_is: Any, valid_is: Any) -> str:
    """sha256 of one fold's train and validation indices, as ``datarun-ramp-fold`` reports
    it (``cv_sha256`` in ``scores.json``)."""
    h = hashlib.sha256()
    for part in (train_is, valid_is):
        h.update(json.dumps([int(i) for i in part]).encode())
        h.update(b"\n")
    return h.hexdigest()


#: A failed fold whose outcome is one of these failed with the submission's own error (the
#: program exited non-zero, or wrote too much): its siblings would fail the same way. A fold
#: lost with its runner, killed out of memory or at its time limit is not.
OWN_ERRORS = ("exit_code", "output_limit")


class DatarunWorker(_BaseWorker):
    """Trains one RAMP submission on a datarun master.

    ``config`` takes ramp-engine's worker keys, as ``ramp_utils.generate_worker_config``
    makes them from an event's ``worker:`` section (``worker_type: datarun`` and the keys
    below) and its ``ramp:`` paths:

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

    * ``datarun_url``, ``datarun_token`` (default: $DATARUN_URL/$DATARUN_TOKEN, then the
      master's data directory, as :class:`Client`), or ``client``: a :class:`Client`;
    * ``image`` (default ``datarun/fold-python:0.1``), ``memory`` (default ``"1G"``),
      ``cpus`` (1), ``priority``, ``queue``, ``data_label``, ``quick_test``.

    The fold count is the kit's: ``get_cv`` on the training data, read in ``setup()`` with
    ramp-workflow (:func:`kit_cv`). An ``n_folds`` key is not needed; one that differs from the
    kit's is ignored with a warning. Each fold checks that the image's ``get_cv`` gives the
    same count (and reports its folds' ``cv_sha256``, compared with this process's).

    The worker follows its folds on the master's events (``Client.events``): ``status`` asks
    only for what changed since it last looked, and ``collect_results`` waits on long polls
    that return when a fold changes, never on a timer (``poll_interval`` is ignored). When a
    fold fails with the submission's own error (``OWN_ERRORS``), the worker removes the
    other folds still queued or running at once (``stopped_because`` says why, and the log).
    A fold removed by someone else (an operator) makes ``status`` ``'retry'``: the dispatcher
    puts the submission back in its queue.

    After a successful collect, ``bagged_scores`` is the path of the ``bagged_scores.csv``
    that the bagging fold wrote, or None when bagging failed (a warning on the
    ``datarun_client.ramp`` logger; the fold scores stand).
    """

    def __init__(self, config: Dict[str, Any], submission: str) -> None:
        super().__init__(config, submission)
        self.fold_ids: List[int] = []
        # The folds' states as their events told, and where the event log was read up to.
        self._states: Dict[int, str] = {}
        self._seq: Optional[int] = None
        self._removed: Set[int] = set()
        self.fold_scores: Dict[int, JSON] = {}
        self.bagged_scores: Optional[str] = None
        self.bag_fold_id: Optional[int] = None
        self.stopped_because: Optional[str] = None
        self.warnings: List[str] = []
        self.cv: List[Tuple[Any, Any]] = []
        self.n_folds = 0
        self._kit_inputs: List[JSON] = []
        self._log_dir: Optional[str] = None
        self.returncode: Optional[int] = None
        self.error_msg: Optional[str] = None

    def _warn(self, msg: str) -> None:
        msg = f"DatarunWorker({self.submission}): {msg}"
        logger.warning(msg)
        self.warnings.append(msg)

    # ---- set up -----------------------------------------------------------------------------

    def setup(self) -> None:
        self._check_config_name(self.config, "kit_dir")
        self.kit_dir: str = self.config["kit_dir"]
        self.data_dir: str = self.config.get("data_dir") or self.kit_dir
        self.submissions_dir: str = self.config.get("submissions_dir") or os.path.join(
            self.kit_dir, "submissions"
        )
        self.submission_dir = os.path.join(self.submissions_dir, self.submission)
        if not os.path.isfile(os.path.join(self.kit_dir, "problem.py")):
            self.status = "error"
            raise ValueError(f"kit_dir: no problem.py in {self.kit_dir}")
        if not os.path.isdir(self.submission_dir):
            self.status = "error"
            raise ValueError(f"no submission directory {self.submission_dir}")
        try:
            self.cv = kit_cv(self.kit_dir, self.data_dir, self.config.get("data_label"),
                             bool(self.config.get("quick_test")))
        except ImportError as e:
            self.status = "error"
            raise ValueError(
                f"the fold count comes from the kit's get_cv, read with ramp-workflow as "
                f"ramp-test reads it, and rampwf cannot be imported here ({e}): install "
                f"ramp-workflow and the kit's requirements beside ramp-engine") from e
        except (Exception, SystemExit) as e:
            self.status = "error"
            raise ValueError(f"the kit's get_cv failed ({type(e).__name__}: {e})") from e
        self.n_folds = len(self.cv)
        if self.n_folds < 1:
            self.status = "error"
            raise ValueError("the kit's get_cv gives no fold")
        given = self.config.get("n_folds")
        if given is not None and str(given) != str(self.n_folds):
            self._warn(f"n_folds={given!r} in the config ignored: the kit's get_cv gives "
                       f"{self.n_folds} folds, which are the folds run")
        self.client: Client = self.config.get("client") or Client(
            self.config.get("datarun_url"), self.config.get("datarun_token")
        )
        self._log_dir = None
        if self.config.get("logs_dir"):
            self._log_dir = os.path.join(self.config["logs_dir"], self.submission)
            os.makedirs(self._log_dir, exist_ok=True)
        super().setup()

    def _inputs(self) -> List[Tuple[str, str]]:
        """(name in the fold's input dir, local path) of every file the folds need."""
        files: List[Tuple[str, str]] = []
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

    def _spec(self, inputs: List[JSON], description: JSON) -> JSON:
        """One fold running ``datarun-ramp-fold`` on ``inputs`` and the fold description."""
        description = dict(description, submission=self.submission, n_folds=self.n_folds)
        if self.config.get("data_label"):
            description["data_label"] = self.config["data_label"]
        if self.config.get("quick_test"):
            description["quick_test"] = True
        sha = self.client.put_blob(json.dumps(description).encode())
        spec: JSON = {
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
        return spec

    def launch_submission(self) -> None:
        if self._status == "running":
            raise ValueError("Wait until the submission is processed before launching a new one.")
        self._kit_inputs = [
            {"name": name, "sha256": self.client.put_blob(path)} for name, path in self._inputs()
        ]
        specs = [self._spec(self._kit_inputs, {"fold": k}) for k in range(self.n_folds)]
        # Where the event log stands before the folds exist: all their events come after it.
        self._seq = self.client.events(timeout=0)["seq"]
        answer = self.client.submit_folds(specs)
        self.fold_ids = answer["ids"]
        self.bag_fold_id = self._submit_bag()
        self._states = {}
        self._removed = set()
        self.stopped_because = None
        self._launched_at = time.monotonic()
        if self._log_dir:
            with open(os.path.join(self._log_dir, "datarun.json"), "w") as f:
                json.dump({"url": self.client.url, "fold_ids": self.fold_ids}, f)
        super().launch_submission()

    def _follow(self, wait: float) -> bool:
        """Reads the folds' events since the last read: one long poll of up to ``wait``
        seconds (0: what is there now), returning as soon as one of the folds changes; stops
        the siblings of a fold that failed with its own error. Returns whether every fold
        stopped (done, failed, removed or held)."""
        going = [i for i in self.fold_ids if self._states.get(i) not in STOPPED]
        if not going:
            return True
        watch = going if len(going) <= MAX_EVENT_FOLDS else None
        page = self.client.events(self._seq, watch, timeout=wait)
        failed: List[int] = []
        for e in page["events"]:
            fold, state = e.get("fold"), e.get("state")
            if state and fold is not None and fold in self.fold_ids:
                if state == "failed" and self._states.get(fold) != "failed":
                    failed.append(fold)
                self._states[fold] = state
        self._seq = page["seq"]
        if failed and self.stopped_because is None:
            self._stop_siblings(failed)
        return all(self._states.get(i) in STOPPED for i in self.fold_ids)

    def _stop_siblings(self, failed: List[int]) -> None:
        """When one of ``failed`` failed with the submission's own error, removes the folds
        still queued or running: they run the same code on other rows."""
        for fold_id in failed:
            fold = self.client.fold(fold_id)["fold"]
            kind = (fold.get("outcome") or {}).get("kind")
            if fold["state"] != "failed" or kind not in OWN_ERRORS:
                continue
            k = self.fold_ids.index(fold_id)
            others = [i for i in self.fold_ids if self._states.get(i) not in STOPPED]
            self.stopped_because = (
                f"CV fold {k} (datarun fold {fold_id}) failed with the submission's own error "
                f"({kind} {(fold.get('outcome') or {}).get('code', '')}".rstrip() + "): "
                f"removed its {len(others)} unfinished sibling fold(s) {others}")
            logger.warning(f"DatarunWorker({self.submission}): {self.stopped_because}")
            for other in others:
                try:
                    self.client.remove_fold(other)
                    self._removed.add(other)
                except DatarunError as e:  # it ended meanwhile: its event says how
                    logger.info(f"DatarunWorker({self.submission}): removing {other}: {e}")
            return

    def _is_submission_interrupted(self) -> bool:
        """A fold removed by someone other than this worker (an operator draining the pool):
        the submission did not fail, ramp-engine's dispatcher retries it ('retry')."""
        self._follow(0)
        return any(self._states.get(i) == "removed" and i not in self._removed
                   for i in self.fold_ids)

    def _is_submission_finished(self) -> bool:
        return self._follow(0)

    # ---- collect ----------------------------------------------------------------------------

    def _training_output(self) -> str:
        return os.path.join(self.submission_dir, "training_output")

    def _prefix(self) -> str:
        """Where ramp's per-fold outputs go: ``training_output/[<data_label>/]``."""
        label = self.config.get("data_label")
        return f"training_output/{label}/" if label else "training_output/"

    def _submit_bag(self) -> int:
        """Submits the bagging fold with the CV folds: it waits on the master for them
        (``inputs_from`` their ``y_pred_{train,test}.npz``, each an after-ok dependency) and
        starts as soon as the last one is done, not when the dispatcher next polls and this
        worker has downloaded every output. A failed or removed CV fold fails it."""
        inputs_from = [{"fold": fold_id, "output": f"{self._prefix()}fold_{k}/y_pred_{suffix}.npz"}
                       for k, fold_id in enumerate(self.fold_ids) for suffix in ("train", "test")]
        spec = dict(self._spec(self._kit_inputs, {"bag": True}), inputs_from=inputs_from)
        return self.client.submit_folds([spec])["ids"][0]

    def _drop_bag(self) -> None:
        """The CV folds did not all end done: the bagging fold (waiting, or failed with its
        parents) will not bag; it is removed and no bagging is reported."""
        if self.bag_fold_id is not None:
            try:
                self.client.remove_fold(self.bag_fold_id)
            except DatarunError:  # it failed with its parents already
                pass
        self.bag_fold_id = None

    def _bag(self, out_dir: str, fold_outputs: List[JSON], logs: List[str]) -> None:
        """Waits for the bagging fold (``datarun-ramp-fold`` with ``"bag": true``, in the same
        image as the folds, on the kit and every fold's predictions) and writes its
        ``bagged_scores.csv`` under ``out_dir``. A kit without test labels writes no
        ``y_pred_test.npz``: the fold submitted up front then fails for want of it, and the
        folds' outputs as they are go to a new one. A failing bagging fold is a warning, not a
        failed submission (every fold was scored). Appends its log to ``logs``."""
        prefix = self._prefix()
        names = {o["name"] for o in fold_outputs}
        complete = all(f"{prefix}fold_{k}/y_pred_{suffix}.npz" in names
                       for k in range(self.n_folds) for suffix in ("train", "test"))
        bag = self.bag_fold_id
        if bag is None or not complete:
            inputs = [{"name": o["name"], "sha256": o["sha256"]} for o in fold_outputs
                      if o["name"].startswith(prefix) and "/y_pred_" in o["name"]]
            spec = self._spec(self._kit_inputs + inputs, {"bag": True})
            bag = self.bag_fold_id = self.client.submit_folds([spec])["ids"][0]
        try:
            self.client._wait_stopped([bag], int(self.config.get("timeout", 7200)))
        except TimeoutError as e:
            self._warn(f"the bagging fold {bag}: {e}")
        fold = self.client.fold(bag)["fold"]
        log = self.client.fold_log(bag)
        logs.append(f"==> datarun fold {bag} (bagging): {fold['state']} <==\n{log}")
        name = prefix + "bagged_scores.csv"
        if fold["state"] != "done":
            self._warn(f"the bagging fold {self.bag_fold_id} {fold['state']}: "
                       f"{_traceback(log) or fold.get('reason') or ''} {name} not written; "
                       f"ramp-board's dispatcher reads it (set_bagged_scores)")
            return
        dest = os.path.join(self.submission_dir, *name.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(self.client.fold_output(bag, name))
        self.bagged_scores = dest

    def collect_results(self) -> Tuple[int, str]:
        """Blocks until every fold stopped, writes their ``training_output/`` files and logs,
        when every fold was done bags them in the fold image into
        ``training_output/bagged_scores.csv`` (as ``ramp-test --save-output``), and returns
        ``(returncode, error_msg)``: 0 when every fold was done; 124 when one hit its time
        limit; else 1 (the submission failed, the kit is bad, a fold was held or
        removed), with the first failing fold's traceback (or reason) as the message."""
        super().collect_results()
        if self._status == "collected":
            raise ValueError("The results were collected already.")
        while self.status == "running":
            self._follow(30)
        details = [self.client.fold(i) for i in self.fold_ids]
        out_dir = self._training_output()
        if os.path.exists(out_dir):
            shutil.rmtree(out_dir)
        logs: List[str] = []
        if self.stopped_because:
            logs.append(f"==> stopped <==\n{self.stopped_because}\n")
        returncode, error_msg = 0, ""
        fold_outputs: List[JSON] = []
        # The folds that failed first: a removed sibling is not the reason.
        order = sorted(range(len(self.fold_ids)),
                       key=lambda k: (details[k]["fold"]["state"] != "failed", k))
        for k in order:
            fold_id, d = self.fold_ids[k], details[k]
            fold = d["fold"]
            attempts = d.get("attempts") or []
            outputs = (attempts[-1].get("outputs") or []) if attempts else []
            names = [o["name"] for o in outputs]
            for name in names:
                if not name.startswith("training_output/"):
                    continue
                dest = os.path.join(self.submission_dir, *name.split("/"))
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with open(dest, "wb") as f:
                    f.write(self.client.fold_output(fold_id, name))
            fold_outputs += outputs
            if "scores.json" in names:
                scores = json.loads(self.client.fold_output(fold_id, "scores.json"))
                self.fold_scores[k] = scores
                train_is, valid_is = self.cv[k]
                if scores.get("cv_sha256") != cv_digest(train_is, valid_is):
                    self._warn(f"CV fold {k}: the image's get_cv gave other train/valid rows "
                               f"than this process's (library versions differ?)")
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
            self._bag(out_dir, fold_outputs, logs)
        else:
            self._drop_bag()
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

    def teardown(self) -> None:
        """Removes the folds still queued or running (a worker killed before collecting), and,
        when ``predictions_dir`` holds the results, the submission's ``training_output``."""
        if self._status != "collected":
            for fold_id in self.fold_ids + ([self.bag_fold_id] if self.bag_fold_id else []):
                try:
                    self.client.remove_fold(fold_id)
                except DatarunError:
                    pass
        # After a failed setup (the dispatcher tears such a worker down) there is no output.
        if (self.config.get("predictions_dir") and hasattr(self, "submission_dir")
                and os.path.exists(self._training_output())):
            shutil.rmtree(self._training_output())
        super().teardown()
