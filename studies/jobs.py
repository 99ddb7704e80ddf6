"""Run a study's training jobs, a few at a time, each as its own process.

Both studies (recipe_study.py, bird_study.py) hand ``run_jobs`` an ordered list of jobs,
a test of whether a job may start (a fine-tune waits for its pretrained net), and for each
job its commands (train, then evaluate). Each job's output goes to its own log file; a
job whose command fails is done too (the studies' tables report unfinished runs).
"""
import subprocess
import threading
import time


def run_jobs(pending, ready, commands, name, logs, env, jobs, cwd, mark_done=None):
    """Run every job of ``pending`` (a list, emptied as jobs start) on ``jobs`` threads.

    ready(job, done) -> bool: whether the job may start, given the set of finished jobs.
    commands(job) -> [argv, ...]: run in turn while they exit 0.
    name(job) -> str: the log file's name (``logs/<name>.log``, appended to).
    """
    done, lock = set(), threading.Lock()
    logs.mkdir(parents=True, exist_ok=True)

    def worker():
        while True:
            with lock:
                job = next((j for j in pending if ready(j, done)), None)
                if job is None and not pending:
                    return
                if job is not None:
                    pending.remove(job)
            if job is None:
                time.sleep(2)
                continue
            t0 = time.time()
            rc = 0
            with open(logs / f"{name(job)}.log", "a") as log:
                for argv in commands(job):
                    rc = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
                    if rc:
                        break
            print(f"{name(job)}: exit {rc}, {time.time() - t0:.0f} s", flush=True)
            with lock:
                done.add(job)

    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
