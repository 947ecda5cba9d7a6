"""The Python end of test_handle's interop tests: fds passed with
multiprocessing.reduction.send_handle / recv_handle over a Unix socket the
C test inherited (FD).

  handle_peer.py recv FD
      Receives a message, then a handle (a pipe's write end), writes
      b"written by python" into it and closes it, then sends b"done".

  handle_peer.py send FD
      Makes a pipe, writes b"read by C" into it and closes the write end,
      then sends b"before", the read end as a handle, b"after"; waits for
      the C side to close.
"""
import os
import sys
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle


def main():
    mode, fd = sys.argv[1], int(sys.argv[2])
    conn = Connection(fd)
    if mode == "recv":
        assert conn.recv_bytes() == b"handle follows"
        h = recv_handle(conn)
        os.write(h, b"written by python")
        os.close(h)
        conn.send_bytes(b"done")
    elif mode == "send":
        r, w = os.pipe()
        os.write(w, b"read by C")
        os.close(w)
        conn.send_bytes(b"before")
        send_handle(conn, r, os.getppid())
        os.close(r)
        conn.send_bytes(b"after")
        try:
            conn.recv_bytes()
        except EOFError:
            pass
    else:
        sys.exit("unknown mode " + mode)


main()
