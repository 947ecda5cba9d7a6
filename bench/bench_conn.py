"""Python's side of bench_conn: multiprocessing.Pipe() (duplex, as the C
rows) send_bytes/recv_bytes between two processes, the same operations as
bench/bench_conn.c. Prints: py <operation> <ns per op>, median of 5."""
import multiprocessing as mp
import statistics
import time

REPS = 5


def child(conn, size, count, round_trip):
    msg = bytes(size)
    conn.recv_bytes()  # go
    for _ in range(count):
        if round_trip:
            conn.recv_bytes()
        conn.send_bytes(msg)


def run(size, count, round_trip):
    a, b = mp.Pipe()
    p = mp.Process(target=child, args=(b, size, count, round_trip))
    p.start()
    msg = bytes(size)
    t0 = time.perf_counter_ns()
    a.send_bytes(b"g")
    for _ in range(count):
        if round_trip:
            a.send_bytes(msg)
        a.recv_bytes()
    t1 = time.perf_counter_ns()
    p.join()
    a.close()
    b.close()
    return (t1 - t0) / count


def row(op, size, count, round_trip=False):
    ns = statistics.median(run(size, count, round_trip) for _ in range(REPS))
    print(f"py\t{op}\t{ns:.0f}", flush=True)


if __name__ == "__main__":
    row("pipe_64B", 64, 50000)
    row("pipe_1MiB", 1 << 20, 200)
    row("pipe_roundtrip_64B", 64, 10000, True)
