"""The Client example of Python's multiprocessing docs, talking to the C
server examples/listener_server.c (plain Python, nothing of mproc here).

    python3 examples/listener_client.py ADDRESS

ADDRESS is what the server printed: "tcp:HOST:PORT", "unix:/path" or
"unix:@name".
"""
import sys
from array import array
from multiprocessing.connection import Client


def python_address(address):
    if address.startswith("unix:@"):
        return "\0" + address[len("unix:@"):]
    if address.startswith("unix:"):
        return address[len("unix:"):]
    host, port = address[len("tcp:"):].rsplit(":", 1)
    return (host.strip("[]"), int(port))


def main(address):
    with Client(python_address(address), authkey=b"secret password") as conn:
        print(conn.recv_bytes())  # => b'hello'
        arr = array("i", [0, 0, 0, 0, 0])
        print(conn.recv_bytes_into(arr))  # => 8
        print(arr)  # => array('i', [42, 1729, 0, 0, 0])
        conn.send_bytes(b"how are you, C?")
        print(conn.recv_bytes())  # => b'HOW ARE YOU, C?'
        # Objects, as any Python program sends them (pickled by Python,
        # read and written by mproc in C):
        conn.send({"op": "sum", "numbers": [1, 2, 3.5]})
        print(conn.recv())  # => {'sum': 6.5, 'count': 3}
        value = ("echo", None, True, 2**70, b"\x00raw", {1.5: [frozenset({1})]})
        conn.send(value)
        back = conn.recv()
        print(back == value, back)  # => True ('echo', None, True, ...)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
