"""The Python end of test_listener's interop tests.

Addresses are mproc's strings ("unix:/path", "unix:@name", "tcp:HOST:PORT"),
keys are hex ("-" for authkey=None).

  listener_peer.py serve ADDRESS KEY COUNT
      Listener(ADDRESS, authkey=KEY); prints "ADDR <bound address>"; accepts
      COUNT connections one after the other. For each: "AUTHFAIL" if it did
      not authenticate, else echoes every message until the peer closes and
      prints "SERVED <number of messages>".

  listener_peer.py clients ADDRESS GOODKEY BADKEY SIZE...
      Client(ADDRESS, authkey=BADKEY) must fail ("AUTHFAIL", else exit 3);
      then Client(ADDRESS, authkey=GOODKEY) sends one message of each SIZE
      and checks each echo ("OK", else exit 4). BADKEY "skip": no bad one.

Every line is flushed at once: the C test reads them while we run.
"""
import sys
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener


def say(*words):
    print(*words, flush=True)


def key_of(text):
    return None if text == "-" else bytes.fromhex(text)


def py_address(address):
    if address.startswith("unix:@"):
        return "\0" + address[len("unix:@"):]
    if address.startswith("unix:"):
        return address[len("unix:"):]
    host, port = address[len("tcp:"):].rsplit(":", 1)
    return (host.strip("[]"), int(port))


def mproc_address(address):
    if isinstance(address, tuple):
        return "tcp:%s:%d" % address[:2]
    if isinstance(address, bytes):
        address = address.decode()
    if address.startswith("\0"):
        return "unix:@" + address[1:]
    return "unix:" + address


def pattern(size):
    block = bytes((i * 7 + i // 256) & 0xFF for i in range(65536))
    return (block * (size // len(block) + 1))[:size]


def serve(address, key, count):
    with Listener(py_address(address), authkey=key) as listener:
        say("ADDR", mproc_address(listener.address))
        for _ in range(count):
            try:
                conn = listener.accept()
            except AuthenticationError:
                say("AUTHFAIL")
                continue
            served = 0
            with conn:
                while True:
                    try:
                        msg = conn.recv_bytes()
                    except EOFError:
                        break
                    conn.send_bytes(msg)
                    served += 1
            say("SERVED", served)
    return 0


def clients(address, good, bad, sizes):
    if bad != "skip":
        try:
            Client(py_address(address), authkey=key_of(bad)).close()
            say("BAD KEY ACCEPTED")
            return 3
        except AuthenticationError:
            say("AUTHFAIL")
    with Client(py_address(address), authkey=key_of(good)) as conn:
        for size in sizes:
            msg = pattern(size)
            conn.send_bytes(msg)
            if conn.recv_bytes() != msg:
                say("ECHO MISMATCH", size)
                return 4
    say("OK")
    return 0


def main(argv):
    if argv[1] == "serve":
        return serve(argv[2], key_of(argv[3]), int(argv[4]))
    if argv[1] == "clients":
        return clients(argv[2], argv[3], argv[4], [int(s) for s in argv[5:]])
    say("unknown mode", argv[1])
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
