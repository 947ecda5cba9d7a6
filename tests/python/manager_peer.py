"""The Python side of test_manager_python.c: Python's BaseManager against
mproc's manager, both ways.

  manager_peer.py client PORT KEY   a BaseManager client of the mproc
                                    manager at 127.0.0.1:PORT: prints what
                                    it gets from the queue "queue", puts
                                    Python's items, checks the errors
  manager_peer.py blocked PORT KEY  waits in get() on the queue "idle"
                                    until the C test kills it
  manager_peer.py server KEY        a BaseManager server on 127.0.0.1 with
                                    get_queue (holding Python's items) and
                                    get_results; prints its port, serves
                                    until shut down, then prints what
                                    get_results holds

KEY is the authkey as text. Everything printed is one repr per line."""
import queue
from fractions import Fraction
import sys
import threading
from multiprocessing.connection import Client
from multiprocessing.managers import BaseManager, RemoteError

# What Python puts (the C test expects exactly these, in this order).
PY_ITEMS = [None, True, -3, 2**70, 2.5, "p\u00fdthon", b"\x00by", (1, "t"),
            [1, [2]], {"k": "v", 1: None}]


class QueueManager(BaseManager):
    pass


def client(port, key):
    QueueManager.register("get_queue")
    m = QueueManager(address=("127.0.0.1", port), authkey=key)
    m.connect()
    q = m.get_queue()
    # What C put: its items, then a raw (non-pickle) message, then "end".
    while True:
        item = q.get(timeout=30)
        print(repr(item))
        if item == "end":
            break
    try:
        q.get_nowait()
        print("no Empty")
    except queue.Empty:
        print("Empty")
    try:
        q.get(timeout=0.01)
        print("no Empty")
    except queue.Empty:
        print("Empty after timeout")
    print("qsize", q.qsize(), q.empty(), q.full())
    try:
        q._callmethod("task_done")
        print("no error")
    except RemoteError as e:
        print("RemoteError", "is not in exposed" in str(e))
    try:
        q.put(Fraction(1, 3))  # not a basic value: refused, not imported
        print("no error")
    except RemoteError as e:
        print("Fraction RemoteError", "forbidden global" in str(e))
    # A second proxy in another thread: its own connection.
    t = threading.Thread(target=lambda: m.get_queue().put("from a thread"))
    t.start()
    t.join()
    for item in PY_ITEMS:
        q.put(item)
    q.put_nowait("end")
    # Malformed and hostile requests on a raw connection: a RemoteError
    # reply each, and the server still answers.
    c = Client(("127.0.0.1", port), authkey=key)
    c.send_bytes(b"\x80\x04\x95garbage")
    print("garbage", c.recv()[0])
    c.send_bytes(b"\x80\x04cos\nsystem\n(S'echo pwned'\ntR.")
    print("os.system", c.recv()[0])
    c.send((None, "no_such_function", (), {}))
    print("unknown", c.recv()[0])
    c.send((None, "dummy", (), {}))
    print("dummy", c.recv())
    c.close()
    # A get that waits in the server until an mproc process puts.
    QueueManager.register("get_late")
    QueueManager.register("get_late_ready")
    m.get_late_ready().put("ready")
    print("late", repr(m.get_late().get(timeout=60)))
    print("done")


def blocked(port, key):
    QueueManager.register("get_idle")
    m = QueueManager(address=("127.0.0.1", port), authkey=key)
    m.connect()
    q = m.get_idle()
    print("waiting", flush=True)
    q.get()
    print("got something", flush=True)


def server(key):
    items, results = queue.Queue(), queue.Queue()
    for item in PY_ITEMS:
        items.put(item)
    QueueManager.register("get_queue", callable=lambda: items)
    QueueManager.register("get_results", callable=lambda: results)
    m = QueueManager(address=("127.0.0.1", 0), authkey=key)
    s = m.get_server()
    print(s.address[1], flush=True)
    try:
        s.serve_forever()
    except SystemExit:
        pass
    while not results.empty():
        print(repr(results.get()))
    print("served", flush=True)


def main():
    if sys.argv[1] == "client":
        client(int(sys.argv[2]), sys.argv[3].encode())
    elif sys.argv[1] == "blocked":
        blocked(int(sys.argv[2]), sys.argv[3].encode())
    else:
        server(sys.argv[2].encode())


if __name__ == "__main__":
    main()
