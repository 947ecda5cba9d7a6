"""Python's side of bench_queue: multiprocessing.Queue between two processes.

Same operations as bench_queue.c: one producer process and one consumer
(the parent) for 64-byte and 1 MiB messages, and a round trip of a 64-byte
message over a pair of queues. Median of 5 runs, start-up not timed.

Unlike the C side, nothing is pinned to a CPU: Queue's feeder thread would
then share the producer's CPU, and Python measures slower (3.1 -> 4.6 us per
64-byte message here). So Python runs as it runs best.
"""
import multiprocessing as mp
import statistics
import sys
import time

SMALL, LARGE = 64, 1 << 20
SMALL_N, LARGE_N, RTT_N = 50000, 300, 5000
REPS = 5


def producer(q, go, size, n):
    msg = bytes(size)
    go.wait()
    for _ in range(n):
        q.put(msg)


def stream(size, n):
    q, go = mp.Queue(), mp.Event()
    p = mp.Process(target=producer, args=(q, go, size, n))
    p.start()
    t0 = time.perf_counter_ns()
    go.set()
    for _ in range(n):
        if len(q.get()) != size:
            raise SystemExit("bench_queue.py: wrong size")
    ns = (time.perf_counter_ns() - t0) / n
    p.join()
    return ns


def echo(there, back, n):
    for _ in range(n):
        back.put(there.get())


def round_trip(n):
    there, back = mp.Queue(), mp.Queue()
    p = mp.Process(target=echo, args=(there, back, n))
    p.start()
    msg = bytes(SMALL)
    there.put(msg)  # warm up: the child is running and the feeders started
    back.get()
    t0 = time.perf_counter_ns()
    for _ in range(n - 1):
        there.put(msg)
        back.get()
    ns = (time.perf_counter_ns() - t0) / (n - 1)
    p.join()
    return ns


def row(op, fn, *args):
    ns = statistics.median(fn(*args) for _ in range(REPS))
    print(f"py\t{op}\t{ns:.1f}", flush=True)


if __name__ == "__main__":
    only = sys.argv[1] if len(sys.argv) > 1 else None
    mp.set_start_method("fork")
    if only in (None, "small"):
        row("queue put+get 64 B (2 processes)", stream, SMALL,
            SMALL_N)
    if only in (None, "large"):
        row("queue put+get 1 MiB (2 processes)", stream, LARGE,
            LARGE_N)
    if only in (None, "rtt"):
        row("queue round trip 64 B (2 queues)", round_trip, RTT_N)
