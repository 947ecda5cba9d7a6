"""Python's side of bench_dict: a Manager().dict() used by two processes.

Same operations as bench_dict.c: 16-byte keys, 64-byte values, KEYS keys set
up before timing; each of two processes gets (or sets) random keys; ns per
operation over both. Median of 3 runs (a manager call is a round trip to the
server process, so fewer operations than the C side)."""
import multiprocessing as mp
import random
import statistics
import sys
import time

KEYS, OPS, REPS = 10000, 5000, 3


def key(i):
    return i.to_bytes(4, "little") + b"k" * 12


def ops(d, set_, seed, go):
    rnd = random.Random(seed)
    val = bytes(64)
    go.wait()
    for _ in range(OPS):
        k = key(rnd.randrange(KEYS))
        if set_:
            d[k] = val
        else:
            d[k]


def run(d, set_):
    go = mp.Event()
    p = mp.Process(target=ops, args=(d, set_, 7, go))
    p.start()
    t0 = time.perf_counter_ns()
    go.set()
    ops(d, set_, 11, go)
    p.join()
    return (time.perf_counter_ns() - t0) / (2 * OPS)


if __name__ == "__main__":
    only = sys.argv[1] if len(sys.argv) > 1 else None
    mp.set_start_method("fork")
    with mp.Manager() as m:
        d = m.dict()
        d.update({key(i): bytes(64) for i in range(KEYS)})
        for set_, name in ((False, "get"), (True, "set")):
            if only not in (None, name):
                continue
            ns = statistics.median(run(d, set_) for _ in range(REPS))
            print(f"py\tdict {name} 16 B -> 64 B (2 processes)\t{ns:.1f}",
                  flush=True)
