"""Python's side of bench_manager: a BaseManager remote manager (the Python
docs' "Using a remote manager") serving a queue and a dict over
tcp 127.0.0.1, used through proxies by a client that connected to it.

Same rows as bench_manager.c: put then get of a 64-byte message on the
queue; a get of a 64-byte value by a 16-byte key from the dict. Median of
5 runs."""
import multiprocessing as mp
import queue
import statistics
import sys
import time
from multiprocessing.managers import BaseManager

N, REPS = 2000, 5
KEY = b"bench key"

shared_queue = queue.Queue()
shared_dict = {b"0123456789abcdef": bytes(64)}


class ServerManager(BaseManager):
    pass


class ClientManager(BaseManager):
    pass


ServerManager.register("get_queue", callable=lambda: shared_queue)
ServerManager.register("get_dict", callable=lambda: shared_dict)
ClientManager.register("get_queue")
ClientManager.register("get_dict")


def put_get(q):
    msg = bytes(64)
    t0 = time.perf_counter_ns()
    for _ in range(N):
        q.put(msg)
        q.get()
    return (time.perf_counter_ns() - t0) / N


def dict_get(d):
    key = b"0123456789abcdef"
    t0 = time.perf_counter_ns()
    for _ in range(N):
        d.get(key)
    return (time.perf_counter_ns() - t0) / N


if __name__ == "__main__":
    only = sys.argv[1] if len(sys.argv) > 1 else None
    mp.set_start_method("fork")
    server = ServerManager(address=("127.0.0.1", 0), authkey=KEY)
    server.start()
    client = ClientManager(address=server.address, authkey=KEY)
    client.connect()
    if only in (None, "queue"):
        q = client.get_queue()
        ns = statistics.median(put_get(q) for _ in range(REPS))
        print(f"py\tremote queue put+get 64 B (tcp)\t{ns:.1f}", flush=True)
    if only in (None, "dict"):
        d = client.get_dict()
        ns = statistics.median(dict_get(d) for _ in range(REPS))
        print(f"py\tremote dict get 16 B -> 64 B (tcp)\t{ns:.1f}", flush=True)
    server.shutdown()
