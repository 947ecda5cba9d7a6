"""Python's side of bench_obj: CPython's C pickle (pickle.dumps/loads, the
default protocol) on the same objects as bench/bench_obj.c. Prints:
py <operation> <ns per op>, median of 7; each operation frees its result,
as the C side does."""
import pickle
import statistics
import time

REPS = 7


def per_op(fn, iterations):
    t0 = time.perf_counter_ns()
    for _ in range(iterations):
        fn()
    return (time.perf_counter_ns() - t0) / iterations


def rows(name, obj, iterations):
    data = pickle.dumps(obj)
    for op, fn in (("dumps", lambda: pickle.dumps(obj)),
                   ("loads", lambda: pickle.loads(data))):
        ns = statistics.median(per_op(fn, iterations) for _ in range(REPS))
        print(f"py\tobj {op} {name}\t{ns:.0f}", flush=True)


if __name__ == "__main__":
    rows("dict 10k str->int", {"k%d" % i: i for i in range(10000)}, 50)
    rows("list 1M ints", list(range(1000000)), 3)
    rows("bytes 100 MiB", bytes([1]) * (100 << 20), 1)
