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
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
