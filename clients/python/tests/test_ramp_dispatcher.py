"""ramp-engine 0.10.1's own ``Dispatcher`` over ``DatarunWorker``, as a RAMP deployment runs it.

As ramp-engine's own tests do (``ramp_engine/tests/test_dispatcher.py``), a database made with
ramp-database's tools holds an event: here a throwaway PostgreSQL cluster (``initdb`` in a temp
dir, a free loopback port; as the ``postgres`` user when the test runs as root), and the event is
``examples/ramp_kit`` (ramp-database's ``create_toy_db`` clones kits from GitHub: the same steps
are taken on the local kit instead: users, problem, event, team, the kit's submissions). The
dispatcher is then launched with ``worker=DatarunWorker`` and an event config whose ``worker:``
section says ``worker_type: datarun`` and where the master is; it fetches the new submissions,
creates, sets up, launches, polls and collects the workers, and writes the results to the
database (``set_time``, ``set_scores``, ``set_bagged_scores``, leaderboards) until
``hunger_policy="exit"`` stops it. Then the database must hold: the starting kit ``scored``,
with ramp-test's per-fold validation accuracies and its bagged scores (compared with the
``bagged_scores.csv`` ramp-test writes in the fold image); the broken submission
``training_error`` with its traceback; the sandbox submission untouched.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import traceback

import pytest

from datarun_client import DatarunWorker

VALID_ACC = [0.9583, 0.9583, 0.8750, 0.9583]
EVENT = "iris_datarun"


def pg_tool(name):
    """A PostgreSQL server program: on PATH, else in Debian's /usr/lib/postgresql/<v>/bin."""
    found = shutil.which(name) or (sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or
                                   [None])[-1]
    if not found:
        pytest.fail(f"{name} not found: this test needs a PostgreSQL server (apt-get install "
                    "postgresql), as ramp-database does")
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A throwaway cluster: yields ramp-database's ``sqlalchemy`` config for a fresh database;
    stopped and deleted afterwards."""
    initdb, pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
    root = tempfile.mkdtemp(prefix="datarun-ramp-pg-")
    as_user = []
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root and there is no postgres user to run the server as")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), free_port()

    def run(*cmd):
        out = subprocess.run(as_user + list(cmd), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"{cmd}: {out.stdout}{out.stderr}"

    run(initdb, "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    run(pg_ctl, "-D", data, "-l", os.path.join(root, "log"), "-w", "-t", "60", "start",
        "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off")
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE ramp_test")
        conn.close()
        yield {"drivername": "postgresql+psycopg2", "username": "postgres", "password": "",
               "host": "127.0.0.1", "port": port, "database": "ramp_test"}
    finally:
        subprocess.run(as_user + [pg_ctl, "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def deploy(repo, root, database):
    """The event on examples/ramp_kit in ``database``, as ramp-database's ``create_toy_db``
    makes its iris event (without cloning): (database config, event config)."""
    from ramp_database.model import Model
    from ramp_database.testing import setup_files_extension_type
    from ramp_database.tools.event import add_event, add_problem
    from ramp_database.tools.submission import submit_starting_kits
    from ramp_database.tools.team import sign_up_team
    from ramp_database.tools.user import add_user, approve_user
    from ramp_database.utils import session_scope, setup_db
    from ramp_utils import generate_ramp_config

    kit = os.path.join(root, "ramp-kits", "iris")
    shutil.copytree(os.path.join(repo, "examples/ramp_kit"), kit,
                    ignore=shutil.ignore_patterns("training_output", "__pycache__"))
    db_config = {"sqlalchemy": database}
    event_config = {
        "ramp": {"problem_name": "iris", "event_name": EVENT, "event_title": "Iris on datarun",
                 "event_is_public": True, "kit_dir": kit, "data_dir": kit,
                 "submissions_dir": os.path.join(root, "submissions"),
                 "predictions_dir": os.path.join(root, "predictions"),
                 "logs_dir": os.path.join(root, "logs"), "sandbox_dir": "starting_kit"},
        "worker": {"worker_type": "datarun", "datarun_url": os.environ["DATARUN_URL"],
                   "datarun_token": os.environ["DATARUN_TOKEN"], "memory": "512M",
                   "timeout": 300},
    }
    ramp = generate_ramp_config(event_config)
    os.makedirs(ramp["ramp_submissions_dir"])
    engine, _ = setup_db(database)
    Model.metadata.create_all(engine)
    with session_scope(database) as session:
        setup_files_extension_type(session)
        add_user(session, name="alice", password="pw", lastname="A", firstname="Alice",
                 email="alice@example.org", access_level="user")
        approve_user(session, "alice")
        add_problem(session, "iris", ramp["ramp_kit_dir"], ramp["ramp_data_dir"])
        add_event(session, problem_name="iris", event_name=EVENT, event_title="Iris on datarun",
                  ramp_sandbox_name="starting_kit",
                  ramp_submissions_path=ramp["ramp_submissions_dir"], is_public=True)
        sign_up_team(session, EVENT, "alice")
        submit_starting_kits(session, EVENT, "alice", os.path.join(kit, "submissions"))
    return db_config, event_config


def test_ramp_engine_s_dispatcher_trains_the_kit_on_datarun(postgres, repo, client):
    from ramp_database.tools.submission import (get_bagged_scores, get_event_nb_folds,
                                                get_scores, get_submission_by_id,
                                                get_submission_error_msg,
                                                get_submission_state, get_submissions)
    from ramp_database.utils import session_scope
    from ramp_engine import Dispatcher
    from test_ramp_worker import bagged_in_image, read_bagged

    root = tempfile.mkdtemp(prefix="datarun-ramp-deploy-")
    try:
        db_config, event_config = deploy(repo, root, postgres)
        dispatcher = Dispatcher(config=db_config, event_config=event_config,
                                worker=DatarunWorker, n_workers=2, hunger_policy="exit",
                                time_between_collection=0.5)
        failure = []

        def launch():
            try:
                dispatcher.launch()
            except BaseException as e:  # pragma: no cover - shown by the assertion below
                failure.append(e)

        t = threading.Thread(target=launch, daemon=True)
        t.start()
        t.join(300)
        if t.is_alive():
            dispatcher._poison_pill = True
            t.join(60)
            pytest.fail("the dispatcher did not finish in 300 s")
        assert not failure, "".join(traceback.format_exception(failure[0]))

        with session_scope(postgres) as session:
            assert get_event_nb_folds(session, EVENT) == 4
            listed = get_submissions(session, EVENT, state=None)
            ids = [i for i, _, _ in listed]
            folder = {i: name for i, name, _ in listed}  # the dispatcher's submission names
            subs = {i: get_submission_by_id(session, i) for i in ids}
            states = {i: get_submission_state(session, i) for i in ids}
            trained = {subs[i].name: i for i in ids if subs[i].is_not_sandbox}
            # submit_starting_kits names the sandbox kit starting_kit_test, as ramp-board does
            assert sorted(trained) == ["broken", "starting_kit_test"], trained
            good, broken = trained["starting_kit_test"], trained["broken"]
            sandbox = [i for i in ids if not subs[i].is_not_sandbox]
            print(f"submission states: {states}")
            assert states[good] == "scored", (states, get_submission_error_msg(session, good))
            assert states[broken] == "training_error", states
            assert all(states[i] == "new" for i in sandbox), states
            msg = get_submission_error_msg(session, broken)
            assert msg.startswith("Traceback") and "broken on purpose" in msg, msg

            scores = get_scores(session, good)
            valid = [scores.loc[(k, "valid"), "acc"] for k in range(4)]
            print(f"validation accuracy per fold in the database: {valid}")
            assert valid == pytest.approx(VALID_ACC, abs=1e-4)
            bagged = get_bagged_scores(session, good)
            print(f"bagged scores in the database:\n{bagged}")
            submission_dir = os.path.join(root, "ramp-kits", "iris")
            reference = read_bagged(bagged_in_image(submission_dir))
            for (step, n_bag), row in reference.items():
                for score, value in row.items():
                    assert bagged.loc[(step, n_bag), score] == pytest.approx(value, rel=1e-12), \
                        (step, n_bag, score)
            paths = {i: folder[i] for i in (good, broken)}

        # What ran on datarun: 4 CV folds and the bagging fold for the starting kit, the 4
        # failed folds of the broken one, all of them ended.
        logs = os.path.join(root, "logs")
        per_submission = {}
        for d in sorted(os.listdir(logs)):
            with open(os.path.join(logs, d, "log")) as f:
                per_submission[d] = f.read()
        assert sorted(per_submission) == sorted(paths.values()), sorted(per_submission)
        good_log, broken_log = per_submission[paths[good]], per_submission[paths[broken]]
        assert good_log.count(": done <==") == 5 and "(bagging): done" in good_log, good_log
        assert broken_log.count("broken on purpose") >= 1 and "(bagging)" not in broken_log
        # ramp-board reads the results from predictions_dir/<submission>: the bagged file is
        # the bagging fold's.
        pred = os.path.join(root, "predictions", paths[good])
        assert sorted(os.listdir(pred)) == ["bagged_scores.csv"] + [f"fold_{k}" for k in range(4)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
