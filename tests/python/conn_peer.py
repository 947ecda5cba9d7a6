"""The Python end of test_conn's interop tests.

Uses multiprocessing.connection.Connection on fds inherited from the C test:

  conn_peer.py echo RFD WFD SIZE...
      First sends one message of each SIZE (bytes made by pattern() below)
      on WFD; then receives messages on RFD and sends each one back on WFD,
      until the C side closes (EOFError); exits 0.

  conn_peer.py bigecho FD
      Receives one message on FD, prints its length, sends it back, then
      waits for the C side to close.

RFD and WFD may be the same fd (a socketpair end) or the two ends of two
pipes. The C side checks every byte.
"""
import sys
from multiprocessing.connection import Connection


def pattern(size):
    """The bytes the C test expects: byte i is (i * 7 + i // 256) & 0xff."""
    block = bytes((i * 7 + i // 256) & 0xFF for i in range(65536))
    reps = size // len(block) + 1
    data = block * reps
    return data[:size]


def connections(rfd, wfd):
    if rfd == wfd:
        conn = Connection(rfd)
        return conn, conn
    return Connection(rfd, writable=False), Connection(wfd, readable=False)


def echo(rfd, wfd, sizes):
    reader, writer = connections(rfd, wfd)
    for size in sizes:
        writer.send_bytes(pattern(size))
    while True:
        try:
            msg = reader.recv_bytes()
        except EOFError:
            return 0
        writer.send_bytes(msg)


def bigecho(fd):
    conn = Connection(fd)
    msg = conn.recv_bytes()
    print(len(msg), flush=True)
    conn.send_bytes(msg)
    del msg
    try:
        conn.recv_bytes()
    except EOFError:
        pass
    return 0


def main(argv):
    mode = argv[1]
    if mode == "echo":
        return echo(int(argv[2]), int(argv[3]), [int(s) for s in argv[4:]])
    if mode == "bigecho":
        return bigecho(int(argv[2]))
    print("unknown mode", mode, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
