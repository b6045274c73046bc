"""What several test files share: the ORIGINAL datarun's wire format for the `/runapp/` tests
(requests + zlib + base64 + numpy only, not datarun_client), numpy's own stratified k-fold, and
examples/text_problem's script run locally. Not a test module (pytest collects test_*.py)."""

import base64
import importlib.util
import json
import os
import shutil
import time
import zlib

import numpy as np
import requests

AUTH = ("databoard", os.environ.get("DATARUN_TOKEN", ""))
TEXT_PROBLEM = "examples/text_problem"


def url(path):
    return os.environ["DATARUN_URL"].rstrip("/") + "/runapp/" + path


def post(path, data, auth=AUTH):
    return requests.post(url(path), json=data, auth=auth, timeout=60)


def get(path):
    return requests.get(url(path), auth=AUTH, timeout=60)


def zb64(raw):
    return base64.b64encode(zlib.compress(raw)).decode()


def unzb64(text, dtype, shape):
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).reshape(shape)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def wait_ended(ids, timeout=400):
    """`/runapp/` folds by databoard_sf_id once each is TESTED or ERROR (TRAINED and VALIDATED
    show while a fold runs, as in the original), or whatever they are at the deadline."""
    deadline = time.time() + timeout
    while True:
        r = post("testpredictions/list/", {"list_submission_fold": ids})
        assert r.status_code == 200, r.text
        res = {f["databoard_sf_id"]: f for f in r.json()}
        if all(f["state"] in ("TESTED", "ERROR") for f in res.values()) or time.time() > deadline:
            return res
        time.sleep(1)


def stratified_folds(labels, k, seed):
    """Stratified k-fold of positions 0..len(labels)-1, by numpy alone: each class's positions,
    shuffled, dealt round-robin to the k folds."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    start = 0
    for cls in np.unique(labels):
        pos = np.flatnonzero(labels == cls)
        rng.shuffle(pos)
        fold_of[pos] = (np.arange(len(pos)) + start) % k
        start += len(pos)
    every = np.arange(len(labels))
    return [(every[fold_of != i], every[fold_of == i]) for i in range(k)]


def text_problem_split(repo, tmp):
    """examples/text_problem's own prepare_data run here on a copy: (train.jsonl, test.jsonl)
    bytes, in the script's order."""
    shutil.copy(os.path.join(repo, TEXT_PROBLEM, "docs.jsonl"), tmp)
    path = os.path.join(repo, TEXT_PROBLEM, "specific.py")
    spec = importlib.util.spec_from_file_location("text_problem_specific", path)
    specific = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(specific)
    specific.prepare_data(str(tmp))
    return read_file(os.path.join(tmp, "train.jsonl")), read_file(os.path.join(tmp, "test.jsonl"))


def topics(jsonl):
    """The topic of each JSON line of `jsonl` (bytes)."""
    return np.array([json.loads(l)["topic"] for l in jsonl.decode().splitlines() if l.strip()])
