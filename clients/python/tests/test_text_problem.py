"""A problem dataset end to end through the client's helpers: examples/text_problem (300 texts
in 3 topics, `docs.jsonl`, and its problem script `specific.py`) uploaded with `post_data(...,
extra_files=[specific.py])`, split by the script's `prepare_data` on the master
(`custom_post_split`, checked against the script run here), then a TF-IDF + logistic regression
submission and a deliberately broken one on 5 stratified CV folds of the script's training
data. The good one is TESTED on every fold with test accuracy > 0.9 (scored by the master, equal
to ours from its predictions); the broken one ERROR with its traceback; each result comes
through the "new" feed once; the submissions listing counts their states."""

import hashlib
import os
import time

import numpy as np
import pytest

from datarun_client import BadRequest, Conflict, SplitFailed
from helpers import read_file, text_problem_split, topics

K = 5
EX = "examples/text_problem"
TOPICS = ["astronomy", "cooking", "football"]


@pytest.fixture(scope="module")
def text(client, repo, tmp_path_factory):
    ex = os.path.join(repo, EX)
    t0 = time.monotonic()
    data = client.post_data(
        "text-py",
        "topic",
        "vectorizer,classifier",
        os.path.join(ex, "docs.jsonl"),
        score_types=["accuracy", "log_loss"],
        extra_files=[os.path.join(ex, "specific.py")],
    )
    # The split runs as a queue fold: submitting before it is done is a Conflict (409), unless
    # it was already done (then the submission is simply accepted, and tested below).
    running = client.create_split(data["id"], custom=True)["split"]
    assert running["kind"] == "custom" and running["state"] == "running", running
    assert running["fold_id"] > 0
    early = None
    try:
        client.post_submission_fold(
            data["id"], "too-early",
            [os.path.join(ex, "submissions/good/vectorizer.py"),
             os.path.join(ex, "submissions/good/classifier.py")],
            split_id=running["id"], cv={"k": K, "seed": 42, "stratify": True},
        )
    except Conflict as e:
        early = e
    split = client.custom_post_split(data["id"], timeout=300)
    print(f"text: custom split {split['id']} done in {time.monotonic() - t0:.1f}s")
    files = {
        "vectorizer.py": os.path.join(ex, "submissions/good/vectorizer.py"),
        "classifier.py": os.path.join(ex, "submissions/good/classifier.py"),
    }
    good = client.post_submission_fold(
        data["id"], "tfidf-logreg", files, split_id=split["id"],
        cv={"k": K, "seed": 42, "stratify": True},
        resources={"cpus": 1, "memory": "1G"}, hard_time_limit="5m",
    )
    broken = client.post_submission_fold(
        data["id"], "broken",
        [os.path.join(ex, "submissions/broken/vectorizer.py"),
         os.path.join(ex, "submissions/broken/classifier.py")],
        split_id=split["id"], cv={"k": K, "seed": 42, "stratify": True}, priority="H",
        resources={"cpus": 1, "memory": "1G"}, hard_time_limit="5m",
    )
    good = client.wait_submission(good["id"], timeout=400)
    broken = client.wait_submission(broken["id"], timeout=400)
    print(f"text: both submissions ended {time.monotonic() - t0:.1f}s after the upload")
    train, test = text_problem_split(repo, tmp_path_factory.mktemp("text-split"))
    return {"dataset": data, "running": running, "early": early, "split": split, "good": good,
            "broken": broken, "train": train, "test": test}


def test_the_dataset_is_files_with_a_problem_script(client, text, repo):
    data = text["dataset"]
    assert data["problem"] == "specific.py"
    docs = read_file(os.path.join(repo, EX, "docs.jsonl"))
    script = read_file(os.path.join(repo, EX, "specific.py"))
    assert data["files"] == {"docs.jsonl": hashlib.sha256(docs).hexdigest(),
                             "specific.py": hashlib.sha256(script).hexdigest()}
    assert client.dataset_file(data["id"], "docs.jsonl") == docs
    assert client.dataset_file(data["id"], "specific.py") == script
    assert client.dataset(data["id"])["dataset"]["problem"] == "specific.py"


def test_the_custom_split_is_the_scripts(client, text):
    split, data = text["split"], text["dataset"]
    assert split["id"] != text["running"]["id"], "custom_post_split makes a split of its own"
    assert split["state"] == "done" and split["kind"] == "custom"
    assert split["train_rows"] == 240 and split["test_rows"] == 60
    assert {"train.jsonl", "test.jsonl"} <= set(split["files"])
    assert client.dataset_file(data["id"], "train.jsonl", split_id=split["id"]) == text["train"]
    assert client.dataset_file(data["id"], "test.jsonl", split_id=split["id"]) == text["test"]
    # the first one, made with create_split(custom=True), ended done as well
    assert client.wait_split(text["running"]["id"], timeout=60)["state"] == "done"


def test_submitting_before_the_split_is_done_is_a_conflict(client, text):
    if text["early"] is None:
        pytest.fail("the custom split was done before a submission could be posted on it: "
                    "the 409 path was not exercised")
    e = text["early"]
    assert e.status == 409
    assert f"split {text['running']['id']} is still running" in e.message


def test_good_tested_broken_error_and_the_feed_once(client, text):
    good, broken, data = text["good"], text["broken"], text["dataset"]
    assert all(f["state"] == "TESTED" for f in good["folds"]), good["folds"]
    assert all(f["state"] == "ERROR" for f in broken["folds"]), broken["folds"]
    good_ids = [f["id"] for f in good["folds"]]
    broken_ids = [f["id"] for f in broken["folds"]]
    assert len(good_ids) == K and len(broken_ids) == K
    assert sum(f["train_rows"] + f["test_rows"] for f in good["folds"]) == K * 240

    new = client.get_prediction_new(raw_data_id=data["id"])
    by_id = {r["id"]: r for r in new}
    assert set(good_ids + broken_ids) <= set(by_id)
    y_test = topics(text["test"])
    for i in good_ids:
        r = by_id[i]
        assert r["state"] == "TESTED"
        test, train = r["y_pred"]["test"], r["y_pred"]["train"]
        assert test.shape == (60, 3) and train.shape == (240, 3)
        assert np.allclose(test.sum(axis=1), 1.0)
        labels = np.array(r["labels"])
        assert list(labels) == TOPICS
        accuracy = float(np.mean(labels[test.argmax(axis=1)] == y_test))
        server = r["scores"]["test"]["accuracy"]
        print(f"text fold {r['fold_index']}: test accuracy {accuracy:.4f} (master {server:.4f}), "
              f"valid {r['scores']['valid']['accuracy']:.4f}, "
              f"log loss {r['scores']['test']['log_loss']:.4f}")
        assert server > 0.9, r["scores"]
        assert accuracy == pytest.approx(server, abs=1e-12)
    for i in broken_ids:
        r = by_id[i]
        assert r["state"] == "ERROR"
        assert "this text classifier is broken on purpose" in r["reason"], r["reason"]
        assert r["traceback"].startswith("Traceback (most recent call last):")
        assert "classifier.py" in r["traceback"]
        assert r["y_pred"] == {}
    again = client.get_prediction_new(raw_data_id=data["id"])
    assert not set(r["id"] for r in again) & set(good_ids + broken_ids)


def test_the_submissions_listing(client, text):
    data, good, broken = text["dataset"], text["good"], text["broken"]
    subs = {s["name"]: s for s in client.submissions(dataset_id=data["id"])}
    assert {"tfidf-logreg", "broken"} <= set(subs)
    assert all(s["dataset_id"] == data["id"] for s in subs.values())
    g, b = subs["tfidf-logreg"], subs["broken"]
    assert g["id"] == good["id"] and g["split_id"] == text["split"]["id"]
    assert g["states"] == {"TESTED": K} and b["states"] == {"ERROR": K}
    assert [f["id"] for f in g["folds"]] == [f["id"] for f in good["folds"]]
    assert sorted(f["fold_index"] for f in b["folds"]) == list(range(K))
    assert {f["state"] for f in b["folds"]} == {"ERROR"}
    everything = {s["id"] for s in client.submissions()}
    assert {g["id"], b["id"]} <= everything
    other = [s for s in client.submissions() if s["dataset_id"] != data["id"]]
    assert not {s["id"] for s in other} & {g["id"], b["id"]}


def test_a_submission_needs_every_workflow_element(client, text, repo):
    with pytest.raises(BadRequest, match="vectorizer.py"):
        client.post_submission_fold(
            text["dataset"]["id"], "no-vectorizer",
            [os.path.join(repo, EX, "submissions/good/classifier.py")],
            split_id=text["split"]["id"], cv={"k": K, "seed": 42},
        )


def test_a_failing_prepare_data_is_a_clear_error(client, repo):
    script = (b"def prepare_data(path):\n    raise ValueError('no split today')\n\n\n"
              b"def get_train_data(path):\n    return [], []\n\n\n"
              b"def get_test_data(path):\n    return [], []\n")
    data = client.create_problem_dataset(
        "text-py-bad-split",
        {"docs.jsonl": os.path.join(repo, EX, "docs.jsonl"), "problem.py": script},
        workflow_elements=["vectorizer", "classifier"],
    )
    assert data["problem"] == "problem.py"
    with pytest.raises(SplitFailed) as info:
        client.custom_post_split(data["id"], timeout=300)
    e = info.value
    print(f"failed split reason: {e.reason!r}")
    assert "ValueError: no split today" in e.reason
    assert e.split["state"] == "failed"
    with pytest.raises(BadRequest, match=f"split {e.split_id} failed"):
        client.post_submission_fold(
            data["id"], "on-a-failed-split",
            [os.path.join(repo, EX, "submissions/good/vectorizer.py"),
             os.path.join(repo, EX, "submissions/good/classifier.py")],
            split_id=e.split_id, cv={"k": K, "seed": 42},
        )


def test_a_problem_dataset_refuses_a_ratio_split(client, text):
    with pytest.raises(BadRequest, match="problem script"):
        client.post_split(text["dataset"]["id"], held_out_test=0.2)


def test_a_script_without_the_contract_fails_its_split(client, repo):
    """prepare_data alone: datarun-prepare refuses it (exit 2); the split's reason says why."""
    data = client.create_problem_dataset(
        "text-py-no-contract",
        {"docs.jsonl": os.path.join(repo, EX, "docs.jsonl"),
         "p.py": b"def prepare_data(path):\n    pass\n"},
    )
    with pytest.raises(SplitFailed) as info:
        client.custom_post_split(data["id"], timeout=300)
    e = info.value
    print(f"no-contract split reason: {e.reason!r}")
    assert "exit code 2" in e.reason
    assert "lacks function(s) ['get_train_data', 'get_test_data']" in e.reason, e.reason
    log = client.fold_log(e.split["fold_id"])
    assert "lacks function(s) ['get_train_data', 'get_test_data']" in log, log
