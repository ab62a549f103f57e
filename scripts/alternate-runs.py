#!/usr/bin/env python3
"""Runs each command N times, in turn (a, b, c, a, b, c, ...), so a busy
machine's swings fall on every build alike; prints the median wall and user
CPU time of each.

Usage: scripts/alternate-runs.py N 'label=command' ['label=command' ...]
"""
import resource
import shlex
import statistics
import subprocess
import sys
import time


def main():
    if len(sys.argv) < 3 or not sys.argv[1].isdigit() or int(sys.argv[1]) < 1:
        sys.exit("usage: alternate-runs.py N 'label=command' ... (N >= 1)")
    n = int(sys.argv[1])
    cmds = []
    for arg in sys.argv[2:]:
        label, sep, cmd = arg.partition("=")
        if not sep or not cmd:
            sys.exit(f"`{arg}` is not 'label=command'")
        cmds.append((label, cmd))
    times = {label: ([], []) for label, _ in cmds}
    for _ in range(n):
        for label, cmd in cmds:
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            start = time.perf_counter()
            done = subprocess.run(shlex.split(cmd), stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            user = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before
            if done.returncode != 0:
                sys.exit(f"`{cmd}` exited with {done.returncode}")
            times[label][0].append(wall)
            times[label][1].append(user)
    for label, (wall, user) in times.items():
        print(
            f"{label:12s} wall median {statistics.median(wall):.3f} s (min {min(wall):.3f})"
            f"  user median {statistics.median(user):.3f} s (min {min(user):.3f})  n={n}"
        )


if __name__ == "__main__":
    main()
