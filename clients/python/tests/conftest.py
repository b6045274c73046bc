"""Fixtures: a client of the REAL master that `tests/python_client.rs` started (DATARUN_URL,
DATARUN_TOKEN, DATARUN_DATA_DIR). There is no fake: without a master the tests fail."""

import os
import tempfile

# ramp-engine's modules open worker.log and dispatcher.log in the working directory when they
# are imported (datarun_client imports ramp_engine.base): keep them out of the checkout.
_REPO_FROM_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
os.chdir(tempfile.mkdtemp(prefix="datarun-pytest-"))

import pytest  # noqa: E402

from datarun_client import Client  # noqa: E402

#: The repository root (examples/ live there).
REPO = os.path.abspath(
    os.environ.get("DATARUN_REPO") or _REPO_FROM_FILE
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
