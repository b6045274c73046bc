"""Iris end to end through the client (issue #6 item 7's proof): upload, stratified split (0.2,
random state 42), a scikit-learn classifier and a deliberately broken submission on 5
stratified CV folds. The good one reaches TESTED on every fold with test accuracy above 0.9
(computed here from the returned predictions, equal to the master's); the broken one ends in
ERROR with its traceback and comes through the "new" feed; each result is delivered once."""

import csv
import os

import numpy as np
import pytest

from datarun_client import BadRequest, Client
from helpers import stratified_folds

K = 5
SCORES = ["accuracy", "roc_auc", "log_loss"]


def species(repo):
    with open(os.path.join(repo, "examples/iris/iris.csv")) as f:
        return [row["species"] for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def iris(client, repo):
    """The dataset, its split and the two submissions, ended."""
    data = client.post_data(
        "iris-py",
        "species",
        "classifier",
        os.path.join(repo, "examples/iris/iris.csv"),
        score_types=SCORES,
    )
    split = client.post_split(data["id"], held_out_test=0.2, random_state=42, stratify=True)
    truth = species(repo)
    train_labels = [truth[i] for i in split["train"]]
    folds = [
        (train_is, test_is, f"databoard-sf-{i}")
        for i, (train_is, test_is) in enumerate(stratified_folds(train_labels, K, 42))
    ]
    limits = {"resources": {"cpus": 1, "memory": "512M"}, "hard_time_limit": "5m"}
    good = client.post_submission_fold(
        data["id"],
        "logreg",
        [os.path.join(repo, "examples/iris/submission/classifier.py")],
        folds=folds,
        split_id=split["split"]["id"],
        **limits,
    )
    broken = client.post_submission_fold(
        data["id"],
        "broken",
        {"classifier.py": os.path.join(repo, "examples/iris/submission_broken/classifier.py")},
        split_id=split["split"]["id"],
        cv={"k": K, "seed": 42, "stratify": True},
        priority="H",
        **limits,
    )
    good = client.wait_submission(good["id"], timeout=240)
    broken = client.wait_submission(broken["id"], timeout=240)
    return {"dataset": data, "split": split, "good": good, "broken": broken, "truth": truth,
            "folds": folds}


def test_split_is_stratified(iris):
    split = iris["split"]
    assert split["split"]["id"] > 0
    assert len(split["train"]) == 120 and len(split["test"]) == 30
    assert isinstance(split["train"], np.ndarray)
    test_species = [iris["truth"][i] for i in split["test"]]
    assert {s: test_species.count(s) for s in set(test_species)} == {
        "setosa": 10, "versicolor": 10, "virginica": 10}


def test_a_csv_dataset_has_no_custom_split(client, iris):
    with pytest.raises(BadRequest, match="one CSV table without a problem script"):
        client.custom_post_split(iris["dataset"]["id"])


def test_good_tested_broken_error_and_the_feed_once(client, iris):
    good, broken = iris["good"], iris["broken"]
    good_ids = [f["id"] for f in good["folds"]]
    broken_ids = [f["id"] for f in broken["folds"]]
    assert len(good_ids) == K and len(broken_ids) == K
    # Our folds, as we gave them, with the platform's ids.
    for f, (train_is, test_is, client_id) in zip(good["folds"], iris["folds"]):
        assert f["client_id"] == client_id
        assert f["train_rows"] == len(train_is) and f["test_rows"] == len(test_is)
    assert all(f["state"] == "TESTED" for f in good["folds"]), good["folds"]
    assert all(f["state"] == "ERROR" for f in broken["folds"]), broken["folds"]

    # The light listing: every fold, ended and new.
    light = {f["id"]: f for f in client.get_submission_fold_light_detail()}
    for sub, ids, state in ((good, good_ids, "TESTED"), (broken, broken_ids, "ERROR")):
        for i in ids:
            assert light[i] == {"id": i, "submission_id": sub["id"], "state": state, "new": True}

    # The feed: all ten, once, with their predictions as numpy arrays.
    new = client.get_prediction_new(raw_data_id=iris["dataset"]["id"])
    assert sorted(r["id"] for r in new) == sorted(good_ids + broken_ids)
    test_rows = iris["split"]["test"]
    truth_test = np.array([iris["truth"][i] for i in test_rows])
    by_id = {r["id"]: r for r in new}
    for i in good_ids:
        r = by_id[i]
        assert r["state"] == "TESTED"
        test, train = r["y_pred"]["test"], r["y_pred"]["train"]
        assert test.shape == (30, 3) and test.dtype == np.float64
        assert train.shape == (120, 3), "the full training table"
        assert np.allclose(test.sum(axis=1), 1.0), "probabilities"
        labels = np.array(r["labels"])
        assert sorted(labels) == ["setosa", "versicolor", "virginica"]
        accuracy = float(np.mean(labels[test.argmax(axis=1)] == truth_test))
        server = r["scores"]["test"]["accuracy"]
        print(f"fold {r['fold_index']}: test accuracy {accuracy:.4f} (master {server:.4f}), "
              f"valid {r['scores']['valid']['accuracy']:.4f}, "
              f"log loss {r['scores']['test']['log_loss']:.4f}")
        assert accuracy > 0.9, r
        assert accuracy == pytest.approx(server, abs=1e-12)
        # and the master scores the same predictions the same way on request
        again = client.scores(["accuracy"], truth_test, y_proba=test, classes=list(labels))
        assert again["scores"]["accuracy"] == pytest.approx(server, abs=1e-12)
    for i in broken_ids:
        r = by_id[i]
        assert r["state"] == "ERROR"
        assert r["reason"] == "the submission failed: ValueError: this submission is broken on purpose"
        assert r["traceback"].startswith("Traceback (most recent call last):")
        assert r["y_pred"] == {} and r["labels"] is None

    # Each result is delivered once: the feed is empty now, for the dataset and overall.
    assert client.get_prediction_new(raw_data_id=iris["dataset"]["id"]) == []
    assert [r for r in client.get_prediction_new() if r["id"] in by_id] == []
    light = {f["id"]: f for f in client.get_submission_fold_light_detail()}
    assert not any(light[i]["new"] for i in good_ids + broken_ids)

    # By list, whatever the delivery; that changes nothing.
    listed = client.get_prediction_list(good_ids[:2])
    assert [r["id"] for r in listed] == good_ids[:2]
    assert np.array_equal(listed[0]["y_pred"]["test"], by_id[good_ids[0]]["y_pred"]["test"])
    assert client.get_prediction_new(raw_data_id=iris["dataset"]["id"]) == []


def test_broken_fold_detail_has_its_traceback(client, iris):
    detail = client.get_submission_fold_detail(iris["broken"]["folds"][0]["id"])
    tb = detail["submission_fold"]["traceback"]
    assert tb.startswith("Traceback (most recent call last):")
    assert "classifier.py" in tb
    assert tb.rstrip().endswith("ValueError: this submission is broken on purpose")
    assert tb in detail["log"]
    assert detail["fold"]["state"] == "failed"


def test_leaderboard_has_the_good_one(client, iris):
    board = client.leaderboard(iris["dataset"]["id"])
    names = [row["name"] for row in board["rows"]]
    assert names[0] == "logreg", board


def test_client_from_the_master_data_dir(monkeypatch):
    """No url or token: found in the data directory like the Rust CLI (server, admin.token)."""
    data_dir = os.environ.get("DATARUN_DATA_DIR")
    assert data_dir, "DATARUN_DATA_DIR must name the master's data directory"
    url = os.environ["DATARUN_URL"]
    monkeypatch.delenv("DATARUN_URL")
    monkeypatch.delenv("DATARUN_TOKEN")
    monkeypatch.delenv("DATARUN_SERVER", raising=False)
    c = Client()
    assert c.url == url.rstrip("/")
    assert c.datasets(), "the admin token from admin.token works"
