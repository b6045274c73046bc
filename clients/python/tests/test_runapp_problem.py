"""A problem dataset through the `/runapp/` compatibility routes, from a client written against
the ORIGINAL datarun's field names and encodings (requests + zlib + base64 + numpy; not
datarun_client), as its `post_data(..., extra_files=[...])` and `custom_post_split` sent them:
examples/text_problem's `docs.jsonl` and its script (posted as `text_problem.py`: the master
stores the .py as `specific.py`, like the original), the custom split (answered at once with a
task id; submission folds posted before it is done answer 409, so they are retried until a
deadline), a good and a broken submission on 5 CV folds of the script's training data posted
one fold per call, and their results in `testpredictions/new/`, once. Several files without a
.py are refused with the original's 406."""

import os
import time

import numpy as np
import pytest
import requests

from helpers import AUTH, post, url, read_file, stratified_folds, text_problem_split, topics, unzb64, wait_ended, zb64

K = 5
NAME = "text-runapp"
EX = "examples/text_problem"


@pytest.fixture(scope="module")
def flow(repo, tmp_path_factory):
    ex = os.path.join(repo, EX)
    t0 = time.monotonic()
    r = post("rawdata/", {"name": NAME, "target_column": "topic",
                          "workflow_elements": "vectorizer, classifier",
                          "files": {"docs.jsonl": zb64(read_file(os.path.join(ex, "docs.jsonl"))),
                                    "text_problem.py": zb64(read_file(os.path.join(ex, "specific.py")))}})
    assert r.status_code == 201, r.text
    raw = r.json()
    assert set(raw) == {"id", "name", "files_path", "workflow_elements", "target_column"}

    r = post("rawdata/customsplit/", {"raw_data_id": raw["id"]})
    assert r.status_code == 200, r.text
    task_id = r.json()["task_id"]
    assert task_id.startswith("split-"), task_id

    train, test = text_problem_split(repo, tmp_path_factory.mktemp("runapp-text"))
    y_train, y_test = topics(train), topics(test)
    assert len(y_train) == 240 and len(y_test) == 60
    folds = stratified_folds(y_train, K, 0)

    subs = {"good": (8001, "submissions/good"), "broken": (8002, "submissions/broken")}
    posted, conflicts = {}, []
    deadline = time.monotonic() + 300
    for kind, (s_id, sub_dir) in subs.items():
        posted[kind] = []
        for i, (train_is, test_is) in enumerate(folds):
            sf_id = s_id * 10 + i
            data = {"databoard_sf_id": sf_id, "databoard_s_id": s_id,
                    "train_is": zb64(train_is.astype(np.int64).tobytes()),
                    "test_is": zb64(test_is.astype(np.int64).tobytes())}
            if i == 0:
                data["raw_data"] = raw["id"]
                data["files"] = {n: zb64(read_file(os.path.join(ex, sub_dir, n)))
                                 for n in ("vectorizer.py", "classifier.py")}
            while True:
                r = post("submissionfold/", data)
                if r.status_code != 409:
                    break
                conflicts.append(r.json())
                assert time.monotonic() < deadline, f"the custom split never ended: {r.text}"
                time.sleep(0.5)
            assert r.status_code == 201, r.text
            assert r.json()["state"] == "TODO"
            posted[kind].append(sf_id)
    print(f"runapp text: split done and 10 folds posted after {time.monotonic() - t0:.1f}s "
          f"({len(conflicts)} answers 409 before)")
    results = wait_ended(posted["good"] + posted["broken"])
    print(f"runapp text: every fold ended {time.monotonic() - t0:.1f}s after the upload")
    return {"raw": raw, "task_id": task_id, "posted": posted, "conflicts": conflicts,
            "results": results, "y_test": y_test}


def test_the_script_is_stored_as_specific_py(flow):
    """Checked on the native API (the original's rawdata answer does not list files)."""
    r = requests.get(os.environ["DATARUN_URL"].rstrip("/") + f"/api/v1/datasets/{flow['raw']['id']}",
                     headers={"Authorization": f"Bearer {AUTH[1]}"}, timeout=30)
    assert r.status_code == 200, r.text
    d = r.json()["dataset"]
    assert d["problem"] == "specific.py"
    assert sorted(d["files"]) == ["docs.jsonl", "specific.py"]
    assert d["workflow_elements"] == ["vectorizer", "classifier"]
    assert flow["raw"]["workflow_elements"] == "vectorizer, classifier"


def test_folds_before_the_split_are_409(flow):
    if not flow["conflicts"]:
        pytest.fail("the custom split was done before the first fold was posted: "
                    "the 409 path was not exercised")
    split_id = flow["task_id"].split("-", 1)[1]
    for c in flow["conflicts"]:
        assert set(c) == {"detail"}, c
        assert f"split {split_id} is still running" in c["detail"], c


def test_good_tested_broken_error_new_once(flow):
    res, raw_id = flow["results"], flow["raw"]["id"]
    labels = np.array(["astronomy", "cooking", "football"])
    for sf_id in flow["posted"]["good"]:
        f = res[sf_id]
        assert f["state"] == "TESTED", f["log_messages"]
        test = unzb64(f["test_predictions"], np.float64, (60, 3))
        train = unzb64(f["full_train_predictions"], np.float64, (240, 3))
        assert np.allclose(test.sum(axis=1), 1.0) and np.allclose(train.sum(axis=1), 1.0)
        accuracy = float(np.mean(labels[test.argmax(axis=1)] == flow["y_test"]))
        print(f"runapp text fold {sf_id}: test accuracy {accuracy:.4f}, "
              f"train {f['train_time']:.3f}s, memory {f['train_memory']:.1f} MiB")
        assert accuracy > 0.9
    for sf_id in flow["posted"]["broken"]:
        f = res[sf_id]
        assert f["state"] == "ERROR"
        assert "Traceback (most recent call last)" in f["log_messages"]
        assert "this text classifier is broken on purpose" in f["log_messages"]
        assert f["test_predictions"] is None
    every = flow["posted"]["good"] + flow["posted"]["broken"]
    r = post("testpredictions/new/", {"raw_data_id": raw_id})
    assert r.status_code == 200, r.text
    assert sorted(f["databoard_sf_id"] for f in r.json()) == sorted(every)
    assert post("testpredictions/new/", {"raw_data_id": raw_id}).json() == []


def test_several_files_without_a_script_are_406(repo):
    docs = zb64(read_file(os.path.join(repo, EX, "docs.jsonl")))
    r = post("rawdata/", {"name": "text-runapp-no-script", "target_column": "topic",
                          "workflow_elements": "classifier",
                          "files": {"docs.jsonl": docs, "more.jsonl": docs}})
    assert r.status_code == 406, r.text
    assert r.json() == {"error": "Submit a specific.py when submitting several files"}
    names = [d["name"] for d in requests.get(url("rawdata/"), auth=AUTH, timeout=30).json()]
    assert "text-runapp-no-script" not in names
