"""The master's pushed events through the client: ``events()`` (one long poll),
``stream_events()`` (server-sent events, or repeated long polls) and the waits built on them,
against the real master of ``tests/python_client.rs`` (a docker runner of the fold image)."""

import time

import pytest

from datarun_client import BadRequest

IMAGE = "datarun/fold-python:0.1"


def sleeper(seconds):
    return {
        "command": ["sleep", str(seconds)],
        "image": IMAGE,
        "resources": {"cpus": 0.5, "memory": "64M"},
    }


def test_events_long_poll_and_streams(client):
    now = client.events(timeout=0)
    seq = now["seq"]
    assert now["events"] == [] and isinstance(seq, int)
    # Nothing of these folds happens: empty at the timeout, seq unchanged.
    start = time.monotonic()
    quiet = client.events(since=seq, folds=[999999], timeout=0.5)
    assert quiet == {"events": [], "seq": quiet["seq"]} and quiet["seq"] >= seq
    assert 0.45 <= time.monotonic() - start < 5

    fold = client.submit_fold(sleeper(1))["id"]
    # Server-sent events: this fold's events as they happen, until it is done.
    streamed = []
    for e in client.stream_events(since=seq, folds=[fold], timeout=120):
        assert e["fold"] == fold
        streamed.append(e)
        if e.get("state") == "done":
            ended = time.time()
            break
    kinds = [e["kind"] for e in streamed]
    assert kinds == ["submitted", "assigned", "started", "attempt_ended"], kinds
    seqs = [e["seq"] for e in streamed]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    # Pushed, not polled: it came right after the master recorded it.
    assert ended - streamed[-1]["at"] / 1000 < 0.5

    # The same events by repeated long polls, and page by page with limit=1.
    polled = []
    for e in client.stream_events(since=seq, folds=[fold], timeout=30, sse=False):
        polled.append(e["seq"])
        if e.get("state") == "done":
            break
    assert polled == seqs
    paged, since = [], seq
    while True:
        page = client.events(since=since, folds=[fold], timeout=0, limit=1)
        if not page["events"]:
            break
        assert len(page["events"]) == 1
        paged.append(page["events"][0]["seq"])
        since = page["seq"]
    assert paged == seqs

    # A stream from now sees nothing old, and ends at its timeout.
    start = time.monotonic()
    assert list(client.stream_events(folds=[fold], timeout=1)) == []
    assert time.monotonic() - start < 10

    with pytest.raises(BadRequest) as e:
        client.events(since=-1, timeout=0)
    assert e.value.message.startswith("since: ")
    with pytest.raises(ValueError):
        client.events(folds=[], timeout=0)


def test_wait_folds_returns_when_the_folds_end(client):
    ids = client.submit_folds([sleeper(1), sleeper(1), {**sleeper(0), "command": ["false"]}])[
        "ids"
    ]
    folds = client.wait_folds(ids, timeout=120)
    assert [f["state"] for f in folds] == ["done", "done", "failed"]
    # The last fold's end reached the client on an event, not on a later poll.
    ends = [client.fold(i)["events"][-1]["at"] / 1000 for i in ids]
    assert time.time() - max(ends) < 1.0
    slow = client.submit_fold(sleeper(30))["id"]
    with pytest.raises(TimeoutError):
        client.wait_folds([slow], timeout=0.5)
    client.remove_fold(slow)
