"""Python's side of bench_pool: multiprocessing.Pool(2), per task.

The chunksize-1 map runs 50,000 tasks instead of 200,000 (its per-task cost
does not depend on the count, and 200,000 would take about 5 s a run).
Python's Pool has no task_timeout: that row has no Python figure."""
import multiprocessing as mp
import statistics
import sys
import time

TRIVIAL_N = 200_000
WORKERS = 2


def double(x):
    return 2 * x


def burn(n):
    x = n
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
    return x


def median(fn, reps):
    return statistics.median(fn() for _ in range(reps))


def map_per_task(pool, xs, chunksize):
    t0 = time.perf_counter_ns()
    if chunksize:
        out = pool.map(double, xs, chunksize)
    else:
        out = pool.map(double, xs)
    ns = (time.perf_counter_ns() - t0) / len(xs)
    assert out[-1] == 2 * xs[-1]
    return ns


def apply_round_trip(pool, n=2000):
    t0 = time.perf_counter_ns()
    for i in range(n):
        assert pool.apply_async(double, (i,)).get() == 2 * i
    return (time.perf_counter_ns() - t0) / n


def calibrate(seconds):
    """Loops of burn that take about `seconds` (the fastest of a few runs)."""
    n = 1 << 12
    while serial_task(n) < 2e7:
        n *= 2
    best = min(serial_task(n) for _ in range(3))
    return int(n * seconds * 1e9 / best)


def serial_task(loops):
    t0 = time.perf_counter_ns()
    burn(loops)
    return time.perf_counter_ns() - t0


def cpu_per_task(pool, loops, tasks=8):
    t0 = time.perf_counter_ns()
    pool.map(burn, [loops] * tasks)
    return (time.perf_counter_ns() - t0) / tasks


def row(op, ns):
    print(f"py\t{op}\t{ns:.1f}", flush=True)


if __name__ == "__main__":
    method = sys.argv[1] if len(sys.argv) > 1 else "fork"
    ctx = mp.get_context(method)
    with ctx.Pool(WORKERS) as pool:
        xs = list(range(TRIVIAL_N))
        map_per_task(pool, xs, 0)  # warm up
        row("pool map x->2x, auto chunksize (per task)",
            median(lambda: map_per_task(pool, xs, 0), 5))
        row("pool map x->2x, chunksize 1 (per task)",
            median(lambda: map_per_task(pool, xs[:50_000], 1), 3))
        row("pool apply_async+get round trip",
            median(lambda: apply_round_trip(pool), 5))
        loops = calibrate(0.2)
        # The pool and one serial task in alternation: the efficiency
        # (speedup / cores) compares runs under the same load.
        runs = [(cpu_per_task(pool, loops), serial_task(loops))
                for _ in range(3)]
        ns = statistics.median(r[0] for r in runs)
        serial = statistics.median(r[1] for r in runs)
        row("pool map 8 CPU tasks of 0.2 s (per task)", ns)
        print(f"bench_pool.py: CPU-bound efficiency (speedup / {WORKERS} "
              f"cores): {serial / (ns * WORKERS):.3f}", file=sys.stderr)
