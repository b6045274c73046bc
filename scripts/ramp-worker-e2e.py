#!/usr/bin/env python3
"""End to end: the RAMP worker on examples/ramp_kit under a real master, driven as ramp-engine's
Dispatcher drives it (status read at most once per `time_between_collection`, 1 s by default,
then collect_results), with the bagging fold submitted up front (B, the worker as it is) and,
interleaved in the same run, at collect time as before (A: the same worker with
`_submit_bag` returning None, which is the old path). Per run: the wall time from
launch_submission to collect_results' return, and how long after the last CV fold ended the
bagging fold started (the master's timestamps).

  target/py-client-venv/bin/python scripts/ramp-worker-e2e.py [-n RUNS] [--poll SECONDS]
                                                              [--datarun BIN]
      [--versus K,K,... [--fold-seconds S] [--runners R] [--warm N]]

With --versus K,K,... (e.g. 3,6,9,12): instead, per K, a copy of the kit whose get_cv makes K
folds and a submission whose fit sleeps --fold-seconds S (default 10) first, run end to end
by the worker on a master with one docker runner of --runners R slots (default 3), and by
`ramp-test --save-output` in the fold image (confined as a fold, one container), one after
the other: the two wall times (the worker's from setup() to collect_results()' return) and
their ratio, and what a CV fold and the bagging fold took inside their containers (wall and
CPU). Both on this machine: the R "runners" are R slots sharing its cores. With --warm N as
well, a second master whose runner keeps N warm containers (`warm = {...}` in its inventory)
runs the same kit right after the first, so each K gives ramp-test, cold and warm, interleaved.
$DATARUN_E2E_IMAGE names another fold image for --versus (default datarun/fold-python:0.1);
$DATARUN_E2E_LOGS, a directory to keep the masters' logs in (serve-cold.log, serve-warm.log).

The venv is the one tests/python_client.rs makes (the client, ramp-engine, ramp-workflow);
the master serves examples/ramp_kit/runners.toml (one local docker runner, 4 slots, the fold
image, ./images/build-fold-python.sh). The load average is printed before and after.
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
from datarun_client import Client  # noqa: E402
from datarun_client.ramp import DatarunWorker, kit_cv  # noqa: E402


class AtCollect(DatarunWorker):
    """The worker before the change: no bagging fold until collect_results."""

    def _submit_bag(self):
        return None


IMAGE = os.environ.get("DATARUN_E2E_IMAGE", "datarun/fold-python:0.1")
SLOW = """import time

from sklearn.linear_model import LogisticRegression


class Slow(LogisticRegression):
    def fit(self, X, y):
        time.sleep({seconds})
        return super().fit(X, y)


def get_estimator():
    return Slow(max_iter=1000)
"""


def serve(datarun, data_dir, inventory):
    """Starts a master on the inventory file; returns (process, client)."""
    proc = subprocess.Popen(
        [datarun, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0", "--inventory",
         inventory],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(data_dir, "serve.log"), "w"))
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(data_dir, "server")):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"datarun serve did not come up: see {data_dir}/serve.log")
        time.sleep(0.05)
    time.sleep(0.2)
    url = open(os.path.join(data_dir, "server")).read().strip()
    token = open(os.path.join(data_dir, "admin.token")).read().strip()
    return proc, Client(url, token)


def one_run(cls, client, kit, poll):
    """(wall seconds, ms from the last CV fold's end to the bagging fold's start)."""
    shutil.rmtree(os.path.join(kit, "submissions", "starting_kit", "training_output"),
                  ignore_errors=True)
    w = cls({"kit_dir": kit, "client": client, "timeout": 600}, "starting_kit")
    w.setup()
    t0 = time.monotonic()
    w.launch_submission()
    while True:  # the Dispatcher's loop for one worker
        dt = w.time_since_last_status_check()
        if dt is not None and dt < poll:
            time.sleep(0.01)
            continue
        if w.status != "running":
            break
    code, msg = w.collect_results()
    wall = time.monotonic() - t0
    if code != 0 or w.bagged_scores is None:
        sys.exit(f"{cls.__name__}: collect_results gave ({code}, {msg!r}), {w.warnings}")
    ended = max(client.fold(i)["fold"]["ended_at"] for i in w.fold_ids)
    gap = client.fold(w.bag_fold_id)["fold"]["started_at"] - ended
    w.teardown()
    return wall, gap


def slow_kit(tmp, k, seconds):
    """A copy of the example kit with K folds and a submission `slow` sleeping in fit."""
    kit = os.path.join(tmp, f"kit-{k}")
    shutil.copytree(os.path.join(REPO, "examples", "ramp_kit"), kit,
                    ignore=shutil.ignore_patterns("training_output", "__pycache__"))
    problem = os.path.join(kit, "problem.py")
    text, n = re.subn(r"n_splits=4\b", f"n_splits={k}", open(problem).read())
    assert n == 1, "examples/ramp_kit/problem.py: no n_splits=4 to change"
    open(problem, "w").write(text)
    os.makedirs(os.path.join(kit, "submissions", "slow"))
    with open(os.path.join(kit, "submissions", "slow", "estimator.py"), "w") as f:
        f.write(SLOW.format(seconds=seconds))
    os.chmod(tmp, 0o755)  # the container's user 1000 reads the kit
    subprocess.run(["chmod", "-R", "a+rX", kit], check=True)
    return kit


def ramp_test(kit):
    """Seconds `ramp-test --submission slow --save-output` takes in the fold image."""
    t0 = time.monotonic()
    subprocess.run(
        ["docker", "run", "--rm", "--init", "--network", "none", "--read-only", "--tmpfs",
         "/tmp:rw,nosuid,nodev,size=64m,mode=1777", "--cap-drop", "ALL", "--security-opt",
         "no-new-privileges", "--cpus", "1", "--memory", "1g", "--memory-swap", "1g", "--user",
         "1000:1000", "-e", "HOME=/tmp", "-v", f"{kit}:/kit:ro", IMAGE, "sh", "-c",
         "cp -r /kit /tmp/kit && cd /tmp/kit && ramp-test --submission slow --save-output"],
        check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def worker_run(client, kit, poll):
    """Seconds from setup() to collect_results()' return for the `slow` submission."""
    t0 = time.monotonic()
    w = DatarunWorker({"kit_dir": kit, "client": client, "timeout": 3600, "image": IMAGE},
                      "slow")
    w.setup()
    w.launch_submission()
    while True:
        dt = w.time_since_last_status_check()
        if dt is not None and dt < poll:
            time.sleep(0.01)
            continue
        if w.status != "running":
            break
    code, msg = w.collect_results()
    took = time.monotonic() - t0
    if code != 0 or w.bagged_scores is None:
        sys.exit(f"slow kit: collect_results gave ({code}, {msg!r}), {w.warnings}")
    # Inside the containers (the engine's StartedAt to FinishedAt) and CPU, per fold.
    metrics = [client.fold(i)["fold"]["metrics"] or {} for i in w.fold_ids]
    bag = client.fold(w.bag_fold_id)["fold"]["metrics"] or {}
    inside = (statistics.median(m.get("wall_ms", 0) for m in metrics) / 1000,
              statistics.median(m.get("cpu_ms", 0) for m in metrics) / 1000,
              bag.get("wall_ms", 0) / 1000, bag.get("cpu_ms", 0) / 1000)
    w.teardown()
    return took, inside


def versus(args, tmp):
    variants = [("cold", None)] + ([("warm", args.warm)] if args.warm else [])
    masters = {}
    for label, warm in variants:
        inventory = os.path.join(tmp, f"runners-{label}.toml")
        with open(inventory, "w") as f:
            f.write(f'[[runner]]\nname = "ramp-{label}"\ntransport = "local"\n'
                    f'executor = "docker"\nimages = ["{IMAGE}"]\nslots = {args.runners}\n'
                    f'cpus = {args.runners}\nmemory = "{args.runners}G"\nqueues = ["*"]\n')
            if warm:
                f.write(f'warm = {{ image = "{IMAGE}", command = ["datarun-ramp-fold"], '
                        f'count = {warm} }}\n')
        data_dir = os.path.join(tmp, f"master-{label}")
        os.mkdir(data_dir)
        masters[label] = serve(args.datarun, data_dir, inventory)
    rows = []
    # A running dispatcher has ramp-workflow imported already: so has this process.
    kit_cv(os.path.join(REPO, "examples", "ramp_kit"))
    try:
        for run in range(args.n):
            for k in [int(x) for x in args.versus.split(",")]:
                kit = slow_kit(tmp, k, args.fold_seconds)
                reference = ramp_test(kit)
                for label, _ in variants:
                    time.sleep(5)  # the warm runner's containers are back in its pool
                    took, (wall, cpu, bag_wall, bag_cpu) = worker_run(masters[label][1], kit,
                                                                      args.poll)
                    rows.append((k, label, took, reference))
                    print(f"run {run} K={k} {label}: datarun {took:.1f} s, ramp-test "
                          f"{reference:.1f} s, ratio {took / reference:.2f}; in its container a "
                          f"CV fold took {wall:.1f} s ({cpu:.1f} s CPU, medians), the bagging "
                          f"fold {bag_wall:.1f} s ({bag_cpu:.1f} s CPU)", flush=True)
                shutil.rmtree(kit)
    finally:
        for proc, _ in masters.values():
            proc.terminate()
            proc.wait(timeout=30)
        if os.environ.get("DATARUN_E2E_LOGS"):  # keep the masters' logs (and their agents')
            for label, _ in variants:
                shutil.copy(os.path.join(tmp, f"master-{label}", "serve.log"),
                            os.path.join(os.environ["DATARUN_E2E_LOGS"], f"serve-{label}.log"))
    for k in sorted({r[0] for r in rows}):
        for label, _ in variants:
            ratios = [t / ref for kk, lb, t, ref in rows if kk == k and lb == label]
            print(f"K={k} {label}: median ratio {statistics.median(ratios):.2f} "
                  f"(min {min(ratios):.2f}, max {max(ratios):.2f}, {len(ratios)} runs)")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3, help="runs of each variant (default 3)")
    ap.add_argument("--poll", type=float, default=1.0,
                    help="the Dispatcher's time_between_collection (default 1 s)")
    ap.add_argument("--datarun", default=os.path.join(REPO, "target", "debug", "datarun"))
    ap.add_argument("--versus", help="fold counts, e.g. 3,6,9,12: datarun against ramp-test")
    ap.add_argument("--fold-seconds", type=float, default=10)
    ap.add_argument("--runners", type=int, default=3)
    ap.add_argument("--warm", type=int, default=0,
                    help="with --versus: also a runner keeping this many warm containers")
    args = ap.parse_args()
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} on "
          f"{os.cpu_count()} cores (before)")
    if args.versus:
        with tempfile.TemporaryDirectory() as tmp:
            versus(args, tmp)
        print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} (after)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        kit = os.path.join(tmp, "kit")
        shutil.copytree(os.path.join(REPO, "examples", "ramp_kit"), kit,
                        ignore=shutil.ignore_patterns("training_output", "__pycache__"))
        data_dir = os.path.join(tmp, "master")
        os.mkdir(data_dir)
        proc, client = serve(args.datarun, data_dir,
                             os.path.join(REPO, "examples", "ramp_kit", "runners.toml"))
        try:
            results = {"A": [], "B": []}
            for i in range(args.n):
                for label, cls in (("A", AtCollect), ("B", DatarunWorker)):
                    wall, gap = one_run(cls, client, kit, args.poll)
                    results[label].append((wall, gap))
                    print(f"run {i} {label}: {wall:.2f} s, bagging fold started {gap} ms "
                          f"after the last CV fold ended", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} (after)")
    for label, what in (("A", "bagging fold submitted at collect (before)"),
                        ("B", "bagging fold submitted with the CV folds")):
        walls = [w for w, _ in results[label]]
        gaps = [g for _, g in results[label]]
        print(f"{label} ({what}): median wall {statistics.median(walls):.2f} s "
              f"(min {min(walls):.2f}, max {max(walls):.2f}), median gap "
              f"{statistics.median(gaps):.0f} ms (min {min(gaps)}, max {max(gaps)})")


if __name__ == "__main__":
    main()
