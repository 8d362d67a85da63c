#!/usr/bin/env python3
"""Write N bytes of compressible, text-like data to stdout (helper for bench/run.sh).

Words drawn uniformly at random (os.urandom) from a fixed 256-word vocabulary of
2-9 letters, a newline every ~16 words. zstd -3 gets ~3.5x on it, gzip -6 ~3.4x,
and both run at ordinary text speed (no pathological match-finder cases).
"""
import os
import random
import sys

n = int(sys.argv[1])
rng = random.Random(42)
letters = "etaoinshrdlucmfwyp"
words = []
for i in range(256):
    w = "".join(rng.choice(letters) for _ in range(rng.randint(2, 9)))
    words.append((w + ("\n" if i % 16 == 0 else " ")).encode())
out = sys.stdout.buffer
written = 0
while written < n:
    chunk = b"".join([words[b] for b in os.urandom(1 << 20)])[: n - written]
    out.write(chunk)
    written += len(chunk)
