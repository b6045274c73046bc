"""The typed client's methods for the native API (issue 15 item 8): listing with paging,
hold/release/remove, bulk, analyze, arrays, the queue, owners, runners (drain/resume, reload),
maintenance, splits, and webhooks (a receiver in this process checks each delivery with
``verify_webhook``), against the real master of ``tests/python_client.rs`` (a docker runner
``ml`` of the fold image, started with ``--webhook-allow 127.0.0.0/8``)."""

from __future__ import annotations

import http.server
import os
import threading
import time
from typing import Any, Dict, List, Tuple

import pytest

from datarun_client import BadRequest, Client, NotFound, verify_webhook
from datarun_client.client import ROUTES

IMAGE = "datarun/fold-python:0.1"


def sleeper(seconds: float) -> Dict[str, Any]:
    return {
        "command": ["sleep", str(seconds)],
        "image": IMAGE,
        "resources": {"cpus": 0.5, "memory": "64M"},
    }


def test_listing_pages_and_filters(client: Client) -> None:
    ids = client.submit_folds([sleeper(0), sleeper(0), sleeper(0)])["ids"]
    client.wait_folds(ids, timeout=120)
    page = client.list_folds(state="done", after=ids[0] - 1, limit=1)
    assert [f["id"] for f in page["folds"]] == [ids[0]] and page["next"] == ids[0]
    seen = [f["id"] for f in client.all_folds(state=["done"], limit=1) if f["id"] in ids]
    assert seen == ids
    newest = client.list_folds(order="newest", limit=2)["folds"]
    assert [f["id"] for f in newest] == sorted([f["id"] for f in newest], reverse=True)
    with pytest.raises(BadRequest):
        client.list_folds(state="nonsense")


def test_hold_release_remove_bulk_and_analyze(client: Client) -> None:
    fold = client.submit_fold(sleeper(60))["id"]
    held = client.hold_fold(fold, reason="looking at it")
    assert held["state"] == "held" and "looking at it" in (held["reason"] or "")
    why = client.analyze(fold)
    assert why["fold"] == fold and why["state"] == "held" and why["summary"]
    released = client.release_fold(fold, memory="96M")
    assert released["state"] in ("idle", "assigned", "running")
    assert client.remove_fold(fold)["fold"]["state"] == "removed"

    ids = client.submit_folds([sleeper(60), sleeper(60)])["ids"]
    out = client.bulk("hold", ids=ids, reason="bulk")
    assert out["matched"] == 2 and out["changed"] == 2, out
    out = client.bulk("remove", ids=ids, state="held")
    assert out["changed"] == 2 and out["failed"] == 0, out
    assert {client.fold(i)["fold"]["state"] for i in ids} == {"removed"}


def test_arrays_queue_owners_and_runners(client: Client) -> None:
    answer = client.create_array(sleeper(0), "0-3%2")
    assert answer["cap"] == 2 and [f["index"] for f in answer["folds"]] == [0, 1, 2, 3]
    array = answer["array"]
    assert client.array(array)["size"] == 4
    third = client.array_fold(array, 2)
    assert third["id"] == answer["folds"][2]["id"]
    client.wait_folds([f["id"] for f in answer["folds"]], timeout=120)
    assert client.array(array)["counts"] == {"done": 4}
    listed = client.list_folds(array=array)["folds"]
    assert sorted(f["id"] for f in listed) == [f["id"] for f in answer["folds"]]

    counts = client.queue()
    assert any(c["state"] == "done" and c["count"] >= 4 for c in counts), counts
    assert "owners" in client.owners()
    runners = client.runners()["runners"]
    assert [r["name"] for r in runners] == ["ml"], runners
    assert client.drain_runner("ml") == {"runner": "ml", "drained": True}
    assert client.resume_runner("ml") == {"runner": "ml", "drained": False}
    with pytest.raises(NotFound):
        client.drain_runner("no-such-runner")
    assert "reloaded" in client.reload_runners()
    assert "jobs" in client.maintenance()


def test_splits_of_a_dataset(client: Client) -> None:
    csv = b"a,b,y\n" + b"".join(f"{i},{i * 2},{i % 2}\n".encode() for i in range(20))
    d = client.create_dataset(f"typed-splits-{time.time_ns()}", "y", csv, "classifier", ["accuracy"])
    split = client.create_split(d["id"], held_out_test=0.25)
    assert [s["id"] for s in client.splits(d["id"])] == [split["split"]["id"]]
    with pytest.raises(NotFound):
        client.add_submission_folds(999999, [{"train_is": [0], "test_is": [1]}])


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: List[Tuple[Dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhooks_are_signed_with_the_token_s_secret(client: Client) -> None:
    _Receiver.got = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    secret = client.webhook_secret()
    assert secret.startswith("whsec_") and client.webhook_secret() == secret
    try:
        fold = client.submit_fold(sleeper(0), webhook=url)["id"]
        array = client.create_array(sleeper(0), "0-1", webhook=url)
        deadline = time.monotonic() + 120
        while len(_Receiver.got) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_Receiver.got) == 2, _Receiver.got
        bodies = []
        for headers, body in _Receiver.got:
            delivery = verify_webhook(secret, body, headers["x-datarun-signature"])
            assert delivery["event_id"] == headers["x-datarun-event"]
            bodies.append(delivery)
            with pytest.raises(ValueError):
                verify_webhook(secret, body + b" ", headers["x-datarun-signature"])
        assert {(b["kind"], b["id"], b["state"]) for b in bodies} == {
            ("fold", fold, "done"),
            ("array", array["array"], "done"),
        }
        # The master records a delivery once the receiver has answered: the record may
        # trail the body the receiver already holds by a moment.
        deadline = time.monotonic() + 30
        while True:
            mine = client.webhooks(kind="fold", target=fold)["webhooks"]
            if (mine and mine[0]["state"] != "pending") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(mine) == 1 and mine[0]["state"] == "delivered" and mine[0]["attempts"] == 1
        assert mine[0]["last_status"] == 204
    finally:
        server.shutdown()
    with pytest.raises(BadRequest) as e:
        client.submit_fold(sleeper(0), webhook="http://10.0.0.1/hook")
    assert e.value.message.startswith("webhook: ")


def test_a_submission_s_webhook_comes_when_all_its_folds_ended(client: Client, repo: str) -> None:
    _Receiver.got = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        data = client.post_data(
            f"iris-hook-{time.time_ns()}",
            "species",
            "classifier",
            os.path.join(repo, "examples/iris/iris.csv"),
            score_types=["accuracy"],
        )
        sub = client.create_submission(
            data["id"],
            "logreg",
            [os.path.join(repo, "examples/iris/submission/classifier.py")],
            cv={"k": 2, "seed": 1},
            resources={"cpus": 1, "memory": "512M"},
            webhook=url,
        )["submission"]
        deadline = time.monotonic() + 240
        while not _Receiver.got and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_Receiver.got) == 1, _Receiver.got
        headers, body = _Receiver.got[0]
        delivery = verify_webhook(client.webhook_secret(), body, headers["x-datarun-signature"])
        assert (delivery["kind"], delivery["id"]) == ("submission", sub["id"])
        assert delivery["state"] == "done" and delivery["outcome"] == {"folds": 2, "done": 2}
        # Every fold had ended when it came.
        folds = client.submission(sub["id"])["folds"]
        assert all(client.fold(f["fold_id"])["fold"]["state"] == "done" for f in folds)
    finally:
        server.shutdown()


def test_every_method_named_for_a_route_exists() -> None:
    for (method, path), name in ROUTES.items():
        assert callable(getattr(Client, name)), (method, path, name)
