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

The venv is the one tests/python_client.rs makes (the client, ramp-engine, ramp-workflow);
the master serves examples/ramp_kit/runners.toml (one local docker runner, 4 slots, the fold
image, ./images/build-fold-python.sh). The load average is printed before and after.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "clients", "python"))
from datarun_client import Client  # noqa: E402
from datarun_client.ramp import DatarunWorker  # noqa: E402


class AtCollect(DatarunWorker):
    """The worker before the change: no bagging fold until collect_results."""

    def _submit_bag(self):
        return None


def serve(datarun, data_dir):
    """Starts a master on examples/ramp_kit/runners.toml; returns (process, client)."""
    proc = subprocess.Popen(
        [datarun, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0", "--inventory",
         os.path.join(REPO, "examples", "ramp_kit", "runners.toml")],
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3, help="runs of each variant (default 3)")
    ap.add_argument("--poll", type=float, default=1.0,
                    help="the Dispatcher's time_between_collection (default 1 s)")
    ap.add_argument("--datarun", default=os.path.join(REPO, "target", "debug", "datarun"))
    args = ap.parse_args()
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])} on "
          f"{os.cpu_count()} cores (before)")
    with tempfile.TemporaryDirectory() as tmp:
        kit = os.path.join(tmp, "kit")
        shutil.copytree(os.path.join(REPO, "examples", "ramp_kit"), kit,
                        ignore=shutil.ignore_patterns("training_output", "__pycache__"))
        data_dir = os.path.join(tmp, "master")
        os.mkdir(data_dir)
        proc, client = serve(args.datarun, data_dir)
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
