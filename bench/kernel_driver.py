"""Drives two kernels side by side through jupyter_client and prints one JSON object of timings (ms).
Called by bench/kernel.ts; measurements alternate between the kernels so both see the same machine load."""
import json
import os
import statistics
import sys
import time
from queue import Empty

from jupyter_client.manager import KernelManager

KERNELS = {
    "streambook": {
        "name": "streambook",
        "one_plus_one": "1 + 1",
        "new_sum": "{i} + {i}",
        "typed": "function add{i}(a: number, b: number): number {{\n  return a + b;\n}}\nadd{i}(1, 2)",
    },
    "ipykernel": {
        "name": "python3",
        "one_plus_one": "1 + 1",
        "new_sum": "{i} + {i}",
        "typed": "def add{i}(a: int, b: int) -> int:\n    return a + b\nadd{i}(1, 2)",
    },
}


def now_ms():
    return time.perf_counter() * 1000


def start(name):
    """Milliseconds from launching the process to the first kernel_info_reply."""
    km = KernelManager(kernel_name=name)
    t0 = now_ms()
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    while True:
        # zeromq queues the request until the kernel binds, so one request measures the start precisely.
        msg_id = kc.kernel_info()
        try:
            while True:
                reply = kc.get_shell_msg(timeout=5)
                if reply["parent_header"].get("msg_id") == msg_id or reply["msg_type"] == "kernel_info_reply":
                    elapsed = now_ms() - t0
                    kc.wait_for_ready(timeout=60)
                    return km, kc, elapsed
        except Empty:
            if not km.is_alive():
                raise RuntimeError("kernel %s died while starting" % name)


def round_trip(kc, code, timeout=60):
    """execute_request -> execute_reply and the idle status on iopub."""
    t0 = now_ms()
    msg_id = kc.execute(code)
    got_reply = got_idle = False
    while not got_reply:
        reply = kc.get_shell_msg(timeout=timeout)
        got_reply = reply["parent_header"].get("msg_id") == msg_id
    if reply["content"]["status"] != "ok":
        raise RuntimeError("cell failed: %r -> %r" % (code, reply["content"]))
    while not got_idle:
        msg = kc.get_iopub_msg(timeout=timeout)
        got_idle = (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                    and msg["content"]["execution_state"] == "idle")
    return now_ms() - t0


def p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]


def main():
    starts_n = int(os.environ.get("BENCH_STARTS", "5"))
    cells_n = int(os.environ.get("BENCH_CELLS", "200"))
    session_n = int(os.environ.get("BENCH_SESSION", "2000"))
    results = {k: {"start": [], "first_result": [], "one_plus_one": [], "new_sum": [], "typed": [], "session": []} for k in KERNELS}

    # Start, and time to the first result: what a user waits for after opening a notebook (the first
    # typed cell is sent as soon as kernel_info is answered, as a front end does).
    for n in range(starts_n):
        for key, spec in KERNELS.items():
            km, kc, elapsed = start(spec["name"])
            first = round_trip(kc, spec["typed"].format(i="first%d" % n))
            results[key]["start"].append(elapsed)
            results[key]["first_result"].append(elapsed + first)
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    clients = {}
    for key, spec in KERNELS.items():
        km, kc, _ = start(spec["name"])
        clients[key] = (km, kc)
    try:
        for key in KERNELS:  # warm-up: first type check, first compile
            for i in range(5):
                round_trip(clients[key][1], KERNELS[key]["one_plus_one"])
                round_trip(clients[key][1], KERNELS[key]["typed"].format(i="warm%d" % i))
        for i in range(cells_n):
            for key in KERNELS:
                results[key]["one_plus_one"].append(round_trip(clients[key][1], KERNELS[key]["one_plus_one"]))
        # Never-seen sums (2 + 2, 3 + 3, ...): no cache can answer them.
        for i in range(cells_n):
            for key in KERNELS:
                results[key]["new_sum"].append(round_trip(clients[key][1], KERNELS[key]["new_sum"].format(i=i + 2)))
        for i in range(cells_n):
            for key in KERNELS:
                results[key]["typed"].append(round_trip(clients[key][1], KERNELS[key]["typed"].format(i=i)))
    finally:
        for km, kc in clients.values():
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    # Growth: one fresh session per kernel, session_n typed-function cells; compare the first and last 20.
    # A time budget per kernel keeps a kernel that slows down with the session from hanging the bench;
    # the table then says how many cells the session reached.
    budget_s = float(os.environ.get("BENCH_SESSION_BUDGET_S", "240"))
    for key, spec in KERNELS.items():
        km, kc, _ = start(spec["name"])
        session = results[key]["session"]
        t_end = time.time() + budget_s
        try:
            for i in range(session_n):
                session.append(round_trip(kc, spec["typed"].format(i="s%d" % i), timeout=max(1.0, t_end - time.time())))
                if time.time() > t_end:
                    break
        except Empty:
            sys.stderr.write("%s: session stopped at cell %d (time budget)\n" % (key, len(session) + 1))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    summary = {}
    for key, r in results.items():
        window = min(20, max(1, len(r["session"]) // 10))
        summary[key] = {
            "start_median": statistics.median(r["start"]),
            "first_result_median": statistics.median(r["first_result"]),
            "new_sum_median": statistics.median(r["new_sum"]),
            "one_plus_one_median": statistics.median(r["one_plus_one"]),
            "one_plus_one_p99": p99(r["one_plus_one"]),
            "typed_median": statistics.median(r["typed"]),
            "session_first": statistics.median(r["session"][:window]),
            "session_last": statistics.median(r["session"][-window:]),
            "session_cells": len(r["session"]),
            "session_window": window,
            "cells": len(r["one_plus_one"]),
            "starts": len(r["start"]),
        }
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
