"""Fixtures: a client of the REAL master that `tests/python_client.rs` started (DATARUN_URL,
DATARUN_TOKEN, DATARUN_DATA_DIR). There is no fake: without a master the tests fail."""

import os

import pytest

from datarun_client import Client

#: The repository root (examples/ live there).
REPO = os.path.abspath(
    os.environ.get("DATARUN_REPO") or os.path.join(os.path.dirname(__file__), "..", "..", "..")
)


def pytest_sessionstart(session):
    missing = [v for v in ("DATARUN_URL", "DATARUN_TOKEN") if not os.environ.get(v)]
    if missing:
        raise pytest.UsageError(
            f"{', '.join(missing)} not set: these tests run against a real datarun master; "
            "run them with `cargo nextest run --test python_client`, which starts one"
        )


@pytest.fixture(scope="session")
def client():
    c = Client(os.environ["DATARUN_URL"], os.environ["DATARUN_TOKEN"])
    assert c.health()["ok"] is True
    return c


@pytest.fixture(scope="session")
def repo():
    return REPO
