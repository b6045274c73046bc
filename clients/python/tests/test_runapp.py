"""The `/runapp/` compatibility routes (issue #6 item 1's proof), from a client written against
the ORIGINAL datarun's documented field names and encodings (requests + zlib + base64 + numpy;
not datarun_client): iris uploaded, split 0.2 / random state 42 (checked row for row against
scikit-learn's algorithm, which numpy's legacy RandomState reproduces here), a scikit-learn
classifier and a deliberately broken submission on 5 CV folds posted one fold per call. The
good one is TESTED on every fold with test accuracy > 0.9; the broken one ERROR with
`ERROR(train)` and its traceback, and in the "new" feed; each result delivered once."""

import base64
import math
import os

import numpy as np
import pytest
import requests

from helpers import get, post, read_file, unzb64, url, wait_ended, zb64

K = 5
NAME = "iris-runapp"


def sklearn_split(n, test_size, random_state):
    """sklearn's train_test_split rows (ShuffleSplit arithmetic on numpy's legacy permutation)."""
    n_test = int(math.ceil(test_size * n))
    perm = np.random.RandomState(random_state).permutation(n)
    return perm[n_test:], perm[:n_test]


@pytest.fixture(scope="module")
def flow(repo):
    csv_bytes = read_file(os.path.join(repo, "examples/iris/iris.csv"))
    lines = csv_bytes.decode().strip().splitlines()
    col = lines[0].split(",").index("species")
    species = np.array([l.split(",")[col] for l in lines[1:]])

    r = post("rawdata/", {"name": NAME, "target_column": "species",
                          "workflow_elements": "classifier",
                          "files": {"iris.csv": zb64(csv_bytes)}})
    assert r.status_code == 201, r.text
    raw = r.json()
    assert set(raw) == {"id", "name", "files_path", "workflow_elements", "target_column"}
    r = post("rawdata/", {"name": NAME, "target_column": "species",
                          "workflow_elements": "classifier",
                          "files": {"iris.csv": zb64(csv_bytes)}})
    assert r.status_code == 400 and "RawData with this name already exists" in r.text
    assert any(d["name"] == NAME and d["id"] == raw["id"] for d in get("rawdata/").json())

    r = post("rawdata/split/", {"random_state": 42, "held_out_test": 0.2,
                                "raw_data_id": raw["id"]})
    assert r.status_code == 200 and r.json()["task_id"], r.text

    train_rows, test_rows = sklearn_split(150, 0.2, 42)
    y_train, y_test = species[train_rows], species[test_rows]
    perm = np.random.RandomState(0).permutation(len(y_train))
    folds = [(np.sort(np.setdiff1d(perm, part)), np.sort(part))
             for part in np.array_split(perm, K)]

    subs = {"good": (9001, "submission/classifier.py", "L"),
            "broken": (9002, "submission_broken/classifier.py", "high")}
    posted = {}
    for kind, (s_id, path, prio) in subs.items():
        code = read_file(os.path.join(repo, "examples/iris", path))
        posted[kind] = []
        for i, (train_is, test_is) in enumerate(folds):
            sf_id = s_id * 10 + i
            data = {"databoard_sf_id": sf_id, "databoard_s_id": s_id,
                    "train_is": zb64(train_is.astype(np.int64).tobytes()),
                    "test_is": zb64(test_is.astype(np.int64).tobytes()),
                    "priority": prio}
            if i == 0:
                data["raw_data"] = raw["id"]
                data["files"] = {"classifier.py": zb64(code)}
            r = post("submissionfold/", data)
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["state"] == "TODO" and body["new"] is True
            assert body["train_is"] == data["train_is"]
            assert body["priority"] == ("low" if prio == "L" else "high")
            posted[kind].append(sf_id)

    results = wait_ended(posted["good"] + posted["broken"])
    return {"raw": raw, "posted": posted, "results": results, "y_train": y_train,
            "y_test": y_test, "folds": folds}


def test_auth_is_basic_with_a_token_as_password():
    r = requests.get(url("rawdata/"), auth=("databoard", "not-a-token"), timeout=30)
    assert r.status_code == 403 and r.json() == {"detail": "Invalid username/password."}
    r = requests.get(url("rawdata/"), timeout=30)
    assert r.status_code == 403
    assert r.json() == {"detail": "Authentication credentials were not provided."}


def test_good_tested_broken_error(flow):
    res, labels = flow["results"], np.array(sorted(set(flow["y_train"])))
    keys = ["databoard_sf_id", "databoard_s", "test_predictions", "full_train_predictions",
            "state", "log_messages", "train_time", "validation_time", "test_time",
            "train_cpu_time", "test_cpu_time", "train_memory", "test_memory"]
    for sf_id in flow["posted"]["good"]:
        f = res[sf_id]
        assert list(f) == keys
        assert f["state"] == "TESTED", f["log_messages"]
        assert f["log_messages"] == "\n\n"
        test = unzb64(f["test_predictions"], np.float64, (len(flow["y_test"]), 3))
        train = unzb64(f["full_train_predictions"], np.float64, (len(flow["y_train"]), 3))
        assert np.allclose(test.sum(axis=1), 1.0) and np.allclose(train.sum(axis=1), 1.0)
        accuracy = float(np.mean(labels[test.argmax(axis=1)] == flow["y_test"]))
        print(f"runapp fold {sf_id}: test accuracy {accuracy:.4f}, "
              f"train {f['train_time']:.3f}s, memory {f['train_memory']:.1f} MiB")
        assert accuracy > 0.9
        assert f["train_time"] > 0 and f["test_time"] > 0 and f["train_memory"] > 1
        assert f["test_memory"] > 1, "per phase: the fold's own peak in its test phase"
    for sf_id in flow["posted"]["broken"]:
        f = res[sf_id]
        assert f["state"] == "ERROR"
        assert "ERROR(train)" in f["log_messages"]
        assert "Traceback (most recent call last)" in f["log_messages"]
        assert f["test_predictions"] is None


def test_new_feed_once_then_light_and_detail(flow):
    raw_id = flow["raw"]["id"]
    every = flow["posted"]["good"] + flow["posted"]["broken"]
    light = {f["databoard_sf_id"]: f for f in get("submissionfold-light/").json()}
    for sf_id in every:
        assert list(light[sf_id]) == ["databoard_sf_id", "databoard_s", "state", "new"]
        assert light[sf_id]["new"] is True
    r = post("testpredictions/new/", {"raw_data_id": raw_id})
    assert r.status_code == 200, r.text
    new = r.json()
    assert sorted(f["databoard_sf_id"] for f in new) == sorted(every)
    assert {f["state"] for f in new} == {"TESTED", "ERROR"}
    assert post("testpredictions/new/", {"raw_data_id": raw_id}).json() == []
    assert post("testpredictions/new/", {}).json() == []
    light = {f["databoard_sf_id"]: f for f in get("submissionfold-light/").json()}
    assert all(light[i]["new"] is False for i in every)
    one = get(f"submissionfold/{every[0]}/").json()
    assert one["databoard_sf_id"] == every[0] and one["state"] == "TESTED"
    assert one["new"] is False and "task_id" in one
    assert get("submissionfold/999999/").status_code == 404


def test_bad_input_is_400_and_stores_nothing(flow):
    good = flow["posted"]["good"]
    train_is, test_is = flow["folds"][0]
    ok = zb64(train_is.astype(np.int64).tobytes())
    for bad in (base64.b64encode(b"not zlib").decode(), zb64(b"\x01\x02\x03"),
                zb64(np.array([10_000], dtype=np.int64).tobytes())):
        r = post("submissionfold/", {"databoard_sf_id": 777, "databoard_s_id": 9001,
                                     "train_is": bad, "test_is": ok})
        assert r.status_code == 400 and "train_is" in r.json(), r.text
    assert get("submissionfold/777/").status_code == 404
    r = post("submissionfold/", {"databoard_sf_id": good[0], "databoard_s_id": 9001,
                                 "train_is": ok, "test_is": zb64(test_is.astype(np.int64).tobytes())})
    assert r.status_code == 400
    assert "SubmissionFold with this databoard sf id already exists." in r.text


def test_force_reruns_a_fold_or_replaces_the_files(flow, repo):
    """Databoard's forced retrain: the first fold with `"submission, submission_fold"` and the
    files, the others with `"submission_fold"`; the broken submission becomes a good one."""
    raw_id, broken, good = flow["raw"]["id"], flow["posted"]["broken"], flow["posted"]["good"]
    code = read_file(os.path.join(repo, "examples/iris/submission/classifier.py"))

    def fold(sf_id, s_id, i, force):
        train_is, test_is = flow["folds"][i]
        return {"databoard_sf_id": sf_id, "databoard_s_id": s_id, "force": force,
                "train_is": zb64(train_is.astype(np.int64).tobytes()),
                "test_is": zb64(test_is.astype(np.int64).tobytes())}

    other = fold(broken[0], 9002, 1, "submission_fold")
    r = post("submissionfold/", other)
    assert r.status_code == 400 and "train_is" in r.json(), r.text
    for i, sf_id in enumerate(broken):
        data = fold(sf_id, 9002, i, "submission_fold")
        if i == 0:
            data.update(force="submission, submission_fold", raw_data=raw_id,
                        files={"classifier.py": zb64(code)})
        r = post("submissionfold/", data)
        assert r.status_code == 201, r.text
        assert r.json()["state"] == "TODO" and r.json()["databoard_sf_id"] == sf_id
    res = wait_ended(broken)
    assert all(res[i]["state"] == "TESTED" for i in broken), res
    new = post("testpredictions/new/", {"raw_data_id": raw_id}).json()
    assert sorted(f["databoard_sf_id"] for f in new) == sorted(broken)

    # "submission_fold" alone: that fold runs again, the others stay as they were.
    r = post("submissionfold/", fold(good[0], 9001, 0, "submission_fold"))
    assert r.status_code == 201 and r.json()["state"] == "TODO", r.text
    assert wait_ended([good[0]])[good[0]]["state"] == "TESTED"
    new = post("testpredictions/new/", {"raw_data_id": raw_id}).json()
    assert [f["databoard_sf_id"] for f in new] == [good[0]]
