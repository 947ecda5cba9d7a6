"""Python's multiprocessing on the rows of bench_sync.c.

Rows (ns per operation, median of REPS runs):
  lock_uncontended  multiprocessing.Lock acquire() + release()
  pingpong_event    one round trip between two processes over two
                    multiprocessing.Event objects (wait, clear, set the
                    other's), as in bench_sync.c
  shared_increment  two processes each doing `with v.get_lock(): v.value += 1`
                    on a multiprocessing.Value('l'), ns per increment
Output: py <tab> operation <tab> ns.
"""
import multiprocessing as mp
import statistics
import time

REPS = 5
UNCONTENDED_OPS = 200_000
PINGPONG_ROUNDS = 2_000
INCREMENTS = 20_000


def lock_uncontended():
    lock = mp.Lock()
    t0 = time.perf_counter_ns()
    for _ in range(UNCONTENDED_OPS):
        lock.acquire()
        lock.release()
    return (time.perf_counter_ns() - t0) / UNCONTENDED_OPS


def pingpong_side(ping, pong, first, ready=None):
    if ready is not None:
        ready.set()
    mine, theirs = (pong, ping) if first else (ping, pong)
    for _ in range(PINGPONG_ROUNDS):
        if first:
            theirs.set()
        mine.wait()
        mine.clear()
        if not first:
            theirs.set()


def pingpong_event():
    ping, pong, ready = mp.Event(), mp.Event(), mp.Event()
    child = mp.Process(target=pingpong_side, args=(ping, pong, False, ready))
    child.start()
    ready.wait()  # the start of the process is not measured
    t0 = time.perf_counter_ns()
    pingpong_side(ping, pong, True)
    child.join()
    return (time.perf_counter_ns() - t0) / PINGPONG_ROUNDS


def increment(value, ready=None):
    if ready is not None:
        ready.set()
    for _ in range(INCREMENTS):
        with value.get_lock():
            value.value += 1


def shared_increment():
    value, ready = mp.Value("l", 0), mp.Event()
    child = mp.Process(target=increment, args=(value, ready))
    child.start()
    ready.wait()
    t0 = time.perf_counter_ns()
    increment(value)
    child.join()
    spent = time.perf_counter_ns() - t0
    assert value.value == 2 * INCREMENTS
    return spent / (2 * INCREMENTS)


def main():
    for name, run in (("lock_uncontended", lock_uncontended),
                      ("pingpong_event", pingpong_event),
                      ("shared_increment", shared_increment)):
        ns = statistics.median(run() for _ in range(REPS))
        print(f"py\t{name}\t{ns:.1f}", flush=True)


if __name__ == "__main__":
    main()
