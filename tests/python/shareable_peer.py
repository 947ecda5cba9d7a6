"""The Python side of test_shareable.c: ShareableList made or read here.

  shareable_peer.py read NAME    attach, print the items and the format,
                                 then write new items back
  shareable_peer.py create NAME  make the list test_shareable.c expects

The resource tracker is told to leave the segment alone: the C test
unlinks it (on 3.8-3.12 the tracker would unlink even a segment it only
attached to, at exit)."""
import sys
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import ShareableList


def untrack(sl):
    try:
        resource_tracker.unregister(sl.shm._name, "shared_memory")
    except Exception:
        pass


def main():
    mode, name = sys.argv[1], sys.argv[2]
    if mode == "read":
        sl = ShareableList(name=name)
        untrack(sl)
        print(repr(list(sl)))
        print(sl.format)
        sl[0] = "py"          # a str into a number's slot: "8s"
        sl[2] = None
        sl[3] = 12345678901234
        sl[6] = b"0123456789abcde"  # fills the 16-byte slot but one
        sl[7] = 2.25
        print("written")
        sl.shm.close()
    elif mode == "create":
        sl = ShareableList(
            [7, -1.5, False, True, None, "from python", b"\x01\x00\x02", "",
             2**63 - 1, "h\u00e9"], name=name)
        untrack(sl)
        print(sl.format)
        sl.shm.close()
    else:
        sys.exit("unknown mode " + mode)


main()
