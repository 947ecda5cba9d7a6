"""Python's side of bench_process: start+join of a trivial process."""
import multiprocessing as mp
import statistics
import sys
import time


def trivial():
    pass


def start_join(ctx, n):
    t0 = time.perf_counter_ns()
    for _ in range(n):
        p = ctx.Process(target=trivial)
        p.start()
        p.join()
    return (time.perf_counter_ns() - t0) / n


def row(op, ctx, n, reps=5):
    start_join(ctx, 2)  # warm up (starts the forkserver)
    ns = statistics.median(start_join(ctx, n) for _ in range(reps))
    print(f"py\t{op}\t{ns:.1f}", flush=True)


if __name__ == "__main__":
    only = sys.argv[1] if len(sys.argv) > 1 else None
    for method, n in (("fork", 100), ("spawn", 10), ("forkserver", 30)):
        if only and only != method:
            continue
        row(f"process start+join ({method})", mp.get_context(method), n)
    ballast = bytearray(256 << 20)
    for method, n in (("fork", 30), ("spawn", 5), ("forkserver", 20)):
        if only and only != method:
            continue
        row(f"process start+join, 256 MiB parent ({method})",
            mp.get_context(method), n)
    del ballast
