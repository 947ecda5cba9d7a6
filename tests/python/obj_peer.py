"""The Python end of test_obj's interop tests: Python's pickle and
Connection.send/recv against mproc's values.

  obj_peer.py echo FD PROTO
      On the Connection over FD (a socketpair end): sends the number of
      SAMPLES, then for each of them,
      sends it and checks that what comes back is the same value (same
      types all the way down); then receives values until EOF and checks
      the i-th against SAMPLES[i] (those the C side built itself). PROTO
      0-5 sends pickle.dumps(v, PROTO) with send_bytes and loads replies
      with pickle.loads(recv_bytes()); "send" uses Connection.send/recv.
      Prints "ECHOED n CHECKED m" and exits 0 when all matched.

  obj_peer.py echo2 RFD WFD PROTO
      The same over two one-way pipes.

  obj_peer.py client ADDRESS KEYHEX PROTO
      The same through Client(ADDRESS, authkey=KEY) (the C side listens).
"""
import math
import pickle
import sys
from multiprocessing.connection import Client, Connection

from listener_peer import py_address  # mproc's address strings

x = [1, 2]
SAMPLES = [
    # The first ones are built in C too (test_obj.c, c_samples): keep them
    # in step.
    None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -65536,
    2**31 - 1, -2**31, 2**31, 2**63 - 1, -2**63, 2**63, -2**63 - 1, 2**64,
    0.0, -0.0, 1.5, 0.1, 1e300, float("inf"),
    float("-inf"), float("nan"), "", "hello", "a\\b\nc\r\x00\x1a\\u0041",
    "\u00e9\u20ac\U0001f600", b"", b"abc", bytes(range(256)),
    b"\\\n\r\x00\x1a\\u0041", (), (1,), (1, "a"), (1, 2, 3), (1, 2, 3, 4),
    [], [1, "a", None], {}, {"a": 1, 2: "b", (1, 2): [3]}, set(), {1, 2, 3},
    frozenset(), frozenset({1, "a", (2, 3)}),
    # Python only from here.
    10**100, -(10**100), "x" * 300, "\ud800 lone", b"y" * 70000, 2**1000, -(2**1000) + 7,
    list(range(2500)), {i: str(i) for i in range(2100)},
    set(range(2100)), {"nested": [{"a": (1, frozenset({2}))}, [[[[]]]]]},
    [x, x], (x, x), {"k": (1.0, True)}, {1.5: None, None: 1.5},
]
deep = []
for _ in range(400):
    deep = [deep]
SAMPLES.append(deep)


def same(a, b):
    """== with the types checked all the way down (== says 1 == True)."""
    stack = [(a, b)]
    while stack:
        a, b = stack.pop()
        if type(a) is not type(b):
            return False
        if isinstance(a, float):
            if math.isnan(a) or math.isnan(b):
                if not (math.isnan(a) and math.isnan(b)):
                    return False
            elif a != b or math.copysign(1, a) != math.copysign(1, b):
                return False
        elif isinstance(a, (list, tuple)):
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b))
        elif isinstance(a, dict):
            if list(a) != list(b):  # order kept too
                return False
            stack.extend(zip(a.keys(), b.keys()))
            stack.extend(zip(a.values(), b.values()))
        elif a != b:
            return False
    return True


def run(reader, writer, proto):
    def send(v):
        if proto == "send":
            writer.send(v)
        else:
            writer.send_bytes(pickle.dumps(v, protocol=int(proto)))

    def recv():
        if proto == "send":
            return reader.recv()
        return pickle.loads(reader.recv_bytes())

    bad = 0
    send(len(SAMPLES))  # how many echoes the C side answers
    for i, v in enumerate(SAMPLES):
        send(v)
        back = recv()
        if not same(v, back):
            print("echo %d differs: %r" % (i, back)[:300], file=sys.stderr)
            bad += 1
    checked = 0
    while True:
        try:
            v = recv()
        except EOFError:
            break
        if not same(v, SAMPLES[checked]):
            print("C value %d differs: %r" % (checked, v), file=sys.stderr)
            bad += 1
        checked += 1
    print("ECHOED %d CHECKED %d" % (len(SAMPLES), checked), flush=True)
    return 1 if bad else 0


def main(argv):
    mode = argv[1]
    if mode == "echo":
        conn = Connection(int(argv[2]))
        return run(conn, conn, argv[3])
    if mode == "echo2":
        reader = Connection(int(argv[2]), writable=False)
        writer = Connection(int(argv[3]), readable=False)
        return run(reader, writer, argv[4])
    if mode == "client":
        with Client(py_address(argv[2]), authkey=bytes.fromhex(argv[3])) as c:
            return run(c, c, argv[4])
    print("unknown mode", mode, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
