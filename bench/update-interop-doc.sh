#!/usr/bin/env bash
# Publish the interop matrix of the last run: copy target/interop.md to docs/interop.md.
#
#   bench/update-interop-doc.sh [--run]
#
#   --run   first run the matrix (`cargo test --release --test tests interop`); the copy
#           happens even when cells fail, since the report says which and why
#
# The interop test writes its report into the cargo target directory, not docs/, so
# `cargo test` leaves the worktree clean; updating the committed doc is this explicit step.
# Environment: CARGO_TARGET_DIR, resolved as the test resolves it (a relative one is taken
# from the repository root; unset means <repo>/target).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-target}
case "$TARGET" in
    /*) ;;
    *) TARGET=$REPO/$TARGET ;;
esac
REPORT=$TARGET/interop.md
DOC=$REPO/docs/interop.md

usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

RUN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --run) RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

if [ "$RUN" = 1 ]; then
    # A failed cell fails the test; the report is still worth publishing. A stale report is
    # not: remove it so a run that writes none (a build error) publishes nothing.
    rm -f "$REPORT"
    (cd "$REPO" && cargo test --release --test tests interop) || echo "interop: some cells failed; publishing the report anyway" >&2
fi

if [ ! -f "$REPORT" ]; then
    echo "no report at $REPORT: run \`cargo test --release --test tests interop\` first (or pass --run)" >&2
    exit 1
fi
mkdir -p "$(dirname "$DOC")"
cp "$REPORT" "$DOC"
echo "copied $REPORT to $DOC"
