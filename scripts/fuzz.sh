#!/usr/bin/env bash
# Builds the libFuzzer targets with clang in build-fuzz/ and runs each on a
# seed corpus: fuzz/fuzz_handshake.c (valid handshakes and frames) and
# fuzz/fuzz_obj_loads.c (Python's pickles of basic values, protocols 0-5).
#   scripts/fuzz.sh [SECONDS]
# SECONDS (the whole run, split between the targets) defaults to 30 (the
# short run for CI). A longer run, e.g. before a release: scripts/fuzz.sh
# 3600 (the corpora in build-fuzz/fuzz/corpus*/ grow across runs; crashes
# are saved as build-fuzz/fuzz/crash-*).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
build=build-fuzz
# clang and its libFuzzer runtime are needed here only (not by make build,
# demo or test): installed when missing.
fuzzer_links() {
  echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n)
        { (void)d; (void)n; return 0; }' |
    clang -fsanitize=fuzzer -x c - -o /dev/null 2>/dev/null
}
if ! command -v clang >/dev/null || ! fuzzer_links; then
  scripts/deps.sh clang libclang-rt-dev
fi
CC=clang cmake -S . -B "$build" -DMPROC_FUZZ=ON -DMPROC_BUILD_TESTS=OFF \
  >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz_handshake fuzz_obj_loads \
  >/dev/null

corpus="$build/fuzz/corpus"
mkdir -p "$corpus"
# Seeds: one well-formed conversation per part (first byte: 0 listener side,
# 1 client side, 2 frame reader), in Python's framing.
python3 - "$corpus" <<'PY'
import hashlib, hmac, os, struct, sys
d = sys.argv[1]
def frame(b): return struct.pack("!i", len(b)) + b
def long_frame(b): return struct.pack("!i", -1) + struct.pack("!Q", len(b)) + b
key = b"fuzz key"
legacy = os.urandom(20)
modern = b"{sha256}" + os.urandom(40)
seeds = {
  "server-md5": b"\0" + frame(os.urandom(16)) + frame(b"#CHALLENGE#" + legacy),
  "server-sha256": b"\0" + frame(b"{sha256}" + os.urandom(32)) + frame(b"#WELCOME#"),
  "client-legacy": b"\1" + frame(b"#CHALLENGE#" + legacy) + frame(b"#WELCOME#")
                   + frame(hmac.new(key, legacy, "md5").digest()),
  "client-modern": b"\1" + frame(b"#CHALLENGE#" + modern) + frame(b"#WELCOME#")
                   + frame(b"{sha3_384}" + os.urandom(48)),
  "frames": b"\2" + frame(b"") + frame(b"hello") + long_frame(b"long")
            + frame(b"x" * 100) + struct.pack("!i", -7),
}
for name, data in seeds.items():
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)
PY

obj_corpus="$build/fuzz/corpus-obj"
mkdir -p "$obj_corpus"
# Seeds: Python's own pickles of every kind, in every protocol.
python3 - "$obj_corpus" <<'PY'
import os, pickle, sys
d = sys.argv[1]
x = [1, 2]
values = [None, True, False, 0, -1, 255, 65536, -2**31, 2**63, -2**70, 1.5,
          float("nan"), "", "a\\b\n\u20ac\U0001f600", b"", b"\x00\xff",
          (), (1,), (1, 2, 3, 4), [], [1, [2, (3,)]], {}, {"a": 1, (1, 2): [3]},
          set(), {1, 2}, frozenset(), frozenset({"a", (1,)}), [x, x],
          list(range(1003)), {i: i for i in range(1003)}]
for p in range(6):
    with open(os.path.join(d, "seed-all-%d" % p), "wb") as f:
        f.write(pickle.dumps(values, protocol=p))
    for i, v in enumerate(values):
        with open(os.path.join(d, "seed-%d-%d" % (i, p)), "wb") as f:
            f.write(pickle.dumps(v, protocol=p))
PY
cd "$build/fuzz"
half=$(( (seconds + 1) / 2 ))
./fuzz_handshake -max_total_time="$half" -max_len=4096 -timeout=10 \
  -print_final_stats=1 corpus
./fuzz_obj_loads -max_total_time="$half" -max_len=65536 -timeout=10 \
  -print_final_stats=1 corpus-obj
