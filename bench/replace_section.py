"""Put a markdown section into docs/benchmarks.md (or any file): replace the section whose
heading line is HEADING (up to the next "## " heading or the end), or append it; every
other byte of the file stays as it was.

    python3 bench/replace_section.py FILE NEW_SECTION_FILE HEADING
"""
import os
import sys

path, new_path, heading = sys.argv[1:4]
new = open(new_path, encoding="utf-8").read()
old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
lines = old.splitlines(keepends=True)
start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == heading), None)
if start is None:
    if old and not old.endswith("\n"):
        old += "\n"
    out = old + ("\n" if old and not old.endswith("\n\n") else "") + new
else:
    end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    out = "".join(lines[:start]) + new + ("\n" + tail if tail else "")
open(path, "w", encoding="utf-8").write(out)
