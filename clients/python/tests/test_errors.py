"""Errors: each 4xx comes back as a typed exception carrying the master's own message."""

import os

import numpy as np
import pytest

from datarun_client import (
    BadRequest,
    Client,
    Conflict,
    DatarunError,
    NotFound,
    Unauthorized,
    Unreachable,
)


def test_a_bad_token_is_refused_clearly(client):
    bad = Client(client.url, "not-a-token")
    with pytest.raises(Unauthorized) as e:
        bad.datasets()
    assert e.value.status == 401 and e.value.code == "unauthorized"
    assert e.value.message == "unknown token"
    assert "401" in str(e.value) and "unknown token" in str(e.value)
    assert bad.health()["ok"] is True, "health needs no token"


def test_a_bad_request_surfaces_the_server_message(client, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,x\n2,y\n")
    with pytest.raises(BadRequest) as e:
        client.post_data("errors-t", "nope", ["classifier"], str(table))
    assert e.value.status == 400 and e.value.code == "bad_request"
    assert 'target_column "nope" is not a column of the CSV; its columns are: a, b' in str(e.value)
    d = client.post_data("errors-t", "b", ["classifier"], str(table))
    with pytest.raises(Conflict) as e:
        client.post_data("errors-t", "b", ["classifier"], str(table))
    assert e.value.status == 409 and "errors-t" in e.value.message
    with pytest.raises(BadRequest) as e:
        client.post_split(d["id"], held_out_test=1.5)
    assert str(e.value) == (f"POST /datasets/{d['id']}/splits: the master answered 400: "
                            "held_out_test must be between 0 and 1 (exclusive), not 1.5")
    with pytest.raises(BadRequest, match="workflow elements need"):
        client.post_submission_fold(d["id"], "x", {"other.py": b"pass\n"}, cv={"k": 2})


def test_not_found(client):
    with pytest.raises(NotFound) as e:
        client.get_submission_fold_detail(10**9)
    assert e.value.status == 404 and e.value.message
    with pytest.raises(NotFound, match=r"\[999999999\]"):
        client.get_prediction_list([999999999])


def test_bad_indices_are_refused_before_sending(client):
    with pytest.raises(ValueError, match="boolean mask"):
        client.post_submission_fold(1, "x", {"classifier.py": b""},
                                    folds=[(np.array([True, False]), np.array([1]))])
    with pytest.raises(ValueError, match="integer row indices"):
        client.post_submission_fold(1, "x", {"classifier.py": b""},
                                    folds=[(np.array([0.5]), np.array([1]))])


def test_an_unreachable_master(monkeypatch, tmp_path):
    with pytest.raises(Unreachable, match="cannot reach the datarun master at http://127.0.0.1:9"):
        Client("http://127.0.0.1:9", "t", timeout=5).health()
    for v in ("DATARUN_URL", "DATARUN_SERVER", "DATARUN_TOKEN"):
        monkeypatch.delenv(v, raising=False)
    with pytest.raises(DatarunError, match="no server given"):
        Client(data_dir=str(tmp_path))
