#!/usr/bin/env bash
# Benchmark sub-layer deltas (issue 14): `airlock save --incremental-from` shipping new
# layers as zstd patch-from deltas of their tar against the most similar layer the far
# side holds (plus preflate corrections that rebuild the exact gzip bytes), against the
# layer-level incremental archive (`--no-deltas`) and `docker save | gzip -6`, on images
# built here from real software: a Debian bookworm minbase rootfs (debootstrap) and
# numpy/pandas wheels from PyPI. Two cases: a wheel bump (numpy 2.1.0 -> 2.1.1, pandas
# 2.2.2 -> 2.2.3 on the same base) and a rebuilt base (same files, new mtimes). Also
# measures, for the wheel-bump app layer alone, `zstd --patch-from` at several levels
# and a content-defined-chunking dedup estimate. Writes the section
# "## Sub-layer deltas (issue 14)" of docs/benchmarks.md (replaced if it is there,
# appended if not; the rest of the file is left byte for byte as it was).
#
#   bench/delta.sh [--runs N] [--cache DIR] [--no-write]
#
#   --runs N      timed runs per row, the median is kept (default 3)
#   --cache DIR   keeps the debootstrap rootfs tar and the downloaded wheels between
#                 runs (default $BENCH_CACHE, else /var/tmp/airlock-bench-delta-cache;
#                 delete it to rebuild the base from the mirror)
#   --no-write    print the section on stdout, leave docs/benchmarks.md alone
#
# Environment: BENCH_DIR (work dir, wiped at start; default /tmp/airlock-bench-delta),
#              AIRLOCK (binary; default target/release/airlock in the repo; it is
#              not built here), BENCH_OUT (markdown to edit; default docs/benchmarks.md).
# Needs root (debootstrap, and extracting the rootfs with its owners), a Docker Engine,
# debootstrap, zstd, GNU gzip and tar, jq, python3 with pip; network access to
# deb.debian.org and PyPI when the cache is empty.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/airlock-bench-delta}
AIRLOCK=${AIRLOCK:-$REPO/target/release/airlock}
OUT_MD=${BENCH_OUT:-$REPO/docs/benchmarks.md}
CACHE=${BENCH_CACHE:-/var/tmp/airlock-bench-delta-cache}
HELPER=$REPO/bench/delta_image.py
SECTION="## Sub-layer deltas (issue 14)"
MIRROR=http://deb.debian.org/debian
SUITE=bookworm
REBUILD_MTIME=1700000000          # the rebuilt base: every file touched to this time

# The app layers: the same small dependencies in both releases, numpy and pandas bumped.
DEPS=(python-dateutil==2.9.0.post0 pytz==2024.1 tzdata==2024.1 six==1.16.0)
REL1=(numpy==2.1.0 pandas==2.2.2 "${DEPS[@]}")
REL2=(numpy==2.1.1 pandas==2.2.3 "${DEPS[@]}")
ZSTD_LEVELS=(3 9 15 19)

RUNS=3
WRITE=1
ARGS=("$@")

usage() { sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --runs) RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --cache) CACHE=$2; shift 2 ;;
        --cache=*) CACHE=${1#*=}; shift ;;
        --no-write) WRITE=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }

for t in zstd gzip tar jq python3 docker sha256sum cmp; do
    command -v "$t" >/dev/null || { echo "missing tool: $t (see /work/shared/TOOLS.md)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "missing /usr/bin/time (apt-get install time)" >&2; exit 1; }
python3 -m pip --version >/dev/null 2>&1 || { echo "missing: python3 -m pip" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "no Docker Engine answers (docker info failed)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap; the rootfs is extracted with its owners)" >&2; exit 1; }
[ -x "$AIRLOCK" ] || { echo "no airlock binary at $AIRLOCK (build it, or set AIRLOCK)" >&2; exit 1; }
A=$AIRLOCK
A_SHA=$(sha256sum "$A" | cut -d' ' -f1)   # the binary may be replaced while this runs: checked at the end

log() { printf '[delta-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- work dir
case "$BENCH_DIR" in /|"") echo "refusing BENCH_DIR=$BENCH_DIR" >&2; exit 1 ;; esac
case "$CACHE" in /|"") echo "refusing --cache $CACHE" >&2; exit 1 ;; esac
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{logs,layers,archives,gz} "$CACHE"
W=$BENCH_DIR
LOGS=$W/logs
L=$W/layers
AR=$W/archives
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)

SAMPLER_PID=; DOCKER_IMAGES=()
cleanup() {
    local i
    [ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
    for i in "${DOCKER_IMAGES[@]}"; do docker rmi "$i" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# What else the machine does meanwhile: 1-min load average, and whether a compiler runs.
( trap 'kill $! 2>/dev/null; exit 0' TERM
  while :; do
      printf '%s %s\n' "$(cut -d' ' -f1 /proc/loadavg)" "$(pgrep -c '^(cargo|rustc|cargo-clippy)$' || true)"
      sleep 5 & wait $!
  done ) >"$LOGS/load.txt" 2>/dev/null &
SAMPLER_PID=$!

# ---------------------------------------------------------------- checks
declare -a CHECKS=()
check() { # check DESCRIPTION CMD...
    local d=$1; shift
    echo "=== $d: $*" >>"$LOGS/checks.log"
    if "$@" >>"$LOGS/checks.log" 2>&1; then
        CHECKS+=("ok: $d"); log "ok: $d"
    else
        CHECKS+=("FAILED: $d (see logs/checks.log)"); log "FAILED: $d (see $LOGS/checks.log)"
    fi
}
# Failures of airlock itself, with the command and its output, for the report.
declare -a ERRORS=()
record_error() { # record_error CMD-STRING LOGFILE
    ERRORS+=("$1"$'\n'"$(tail -n 20 "$2")")
    log "FAILED: $1"; tail -n 20 "$2" >&2
}

# ---------------------------------------------------------------- corpus
# Base: debootstrap minbase, cached as a tar (the mirror moves on; the cache keeps reruns
# comparable and fast).
BASE_TAR=$CACHE/base.tar
if [ ! -s "$BASE_TAR" ]; then
    command -v debootstrap >/dev/null || { echo "missing tool: debootstrap (apt-get install -y debootstrap)" >&2; exit 1; }
    log "debootstrap --variant=minbase $SUITE (no cached $BASE_TAR)"
    rm -rf "$CACHE/rootfs.tmp"
    debootstrap --variant=minbase "$SUITE" "$CACHE/rootfs.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
    tar --sort=name --numeric-owner --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
        -C "$CACHE/rootfs.tmp" -cf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$CACHE/rootfs.tmp"
    printf 'debootstrap %s, --variant=minbase %s from %s on %s\n' \
        "$(dpkg-query -W -f='${Version}' debootstrap 2>/dev/null || echo '?')" "$SUITE" "$MIRROR" \
        "$(date -u '+%Y-%m-%d %H:%M UTC')" >"$CACHE/base.info"
fi
BASE_INFO=$(cat "$CACHE/base.info" 2>/dev/null || echo "debootstrap --variant=minbase $SUITE (when: unknown)")
cp "$BASE_TAR" "$L/base.tar"

# Rebuilt base: the same files, every mtime changed.
log "rebuilt base: extract, touch -h -d @$REBUILD_MTIME, re-tar"
mkdir "$W/rootfs2"
tar --numeric-owner -xpf "$L/base.tar" -C "$W/rootfs2"
find "$W/rootfs2" -exec touch -h -d "@$REBUILD_MTIME" {} +
tar --sort=name --numeric-owner -C "$W/rootfs2" -cf "$L/base2.tar" .
rm -rf "$W/rootfs2"

# App layers: wheels downloaded once into the cache, unpacked into site-packages.
fetch_wheels() { # fetch_wheels DIR SPEC...
    local d=$1; shift
    if [ ! -f "$d/.complete" ]; then
        log "pip download ${*} -> $d"
        rm -rf "$d"; mkdir -p "$d"
        python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
            --python-version 3.11 --platform manylinux2014_x86_64 -d "$d" "$@" >>"$LOGS/pip.log" 2>&1 \
            || { tail -n 20 "$LOGS/pip.log" >&2; exit 1; }
        touch "$d/.complete"
    fi
}
fetch_wheels "$CACHE/wheels-1" "${REL1[@]}"
fetch_wheels "$CACHE/wheels-2" "${REL2[@]}"
(cd "$CACHE" && sha256sum wheels-1/*.whl wheels-2/*.whl) >"$LOGS/wheels.sha256"
log "app layers from the wheels"
python3 "$HELPER" wheels-tar "$L/app1.tar" "$CACHE"/wheels-1/*.whl
python3 "$HELPER" wheels-tar "$L/app2.tar" "$CACHE"/wheels-2/*.whl
python3 "$HELPER" wheels-tar "$W/app1-again.tar" "$CACHE"/wheels-1/*.whl
check "the app layer tar is deterministic (built twice from the same wheels: same bytes)" \
    cmp "$L/app1.tar" "$W/app1-again.tar"
rm -f "$W/app1-again.tar"

log "image archives (gzip -6 -n layers)"
oci() { python3 "$HELPER" oci-archive "$@" --gz-cache "$W/gz" >>"$LOGS/images.jsonl"; }
oci "$AR/app1.tar" bench.local/app:1 "$L/base.tar" "$L/app1.tar"
oci "$AR/app2.tar" bench.local/app:2 "$L/base.tar" "$L/app2.tar"
oci "$AR/base1.tar" bench.local/base:1 "$L/base.tar"
oci "$AR/base2.tar" bench.local/base:2 "$L/base2.tar"

gz_of() { echo "$W/gz/$(sha256sum "$1" | cut -d' ' -f1).tar.gz"; }
declare -A LSIZE LGZ LFILES LNAME
for l in base app1 app2 base2; do
    LSIZE[$l]=$(stat -c %s "$L/$l.tar")
    LGZ[$l]=$(stat -c %s "$(gz_of "$L/$l.tar")")
    LNAME[sha256:$(sha256sum "$(gz_of "$L/$l.tar")" | cut -d' ' -f1)]="layer $l"
    LFILES[$l]=$(tar -tf "$L/$l.tar" | wc -l)
done

# ---------------------------------------------------------------- harness
fmt_int() { awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); n = ""; while (length(s) > 3) { n = "," substr(s, length(s)-2) n; s = substr(s, 1, length(s)-3) } print s n }'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) exit 1; print a[int((NR+1)/2)]}'; }
maxn() { sort -g | tail -n1; }
# timed OUTFILE-PREFIX CMD...: runs CMD under /usr/bin/time; appends "secs rss" to
# PREFIX.times, output to PREFIX.log; returns CMD's status.
timed() {
    local p=$1 rc=0; shift
    echo "=== $*" >>"$p.log"
    /usr/bin/time -f '%e %M' -o "$p.t1" "$@" >>"$p.log" 2>"$p.err" || rc=$?
    cat "$p.err" >>"$p.log"
    if [ "$rc" = 0 ]; then tail -n1 "$p.t1" >>"$p.times"; else echo "=== exit status $rc" >>"$p.log"; fi
    return "$rc"
}
secs_med() { awk '{print $1}' "$1.times" | median; }
rss_max() { awk '{print $2}' "$1.times" | maxn; }

blob_sums() { # blob_sums STORE NAME: "sha256sum  digest" of every blob of the image (manifest, config, layers)
    local s=$1 n=$2 j d
    j=$("$A" --store "$s" inspect "$n")
    for d in $(jq -r '.[0] | .ManifestDigest, .Id, .Layers[].Digest' <<<"$j"); do
        printf '%s %s\n' "$(sha256sum "$s/blobs/sha256/${d#sha256:}" | cut -d' ' -f1)" "$d"
    done
}
same_blobs() { # same_blobs NEAR FAR NAME
    local a b
    a=$(blob_sums "$1" "$3") || return 1
    b=$(blob_sums "$2" "$3") || return 1
    echo "$a"
    # every file's sha256 must be its own digest, and the far side's set the near side's
    awk '{ if ("sha256:" $1 != $2) { print "content does not match its digest: " $2; bad = 1 } } END { exit bad }' <<<"$b" || return 1
    [ "$a" = "$b" ] || { echo "far side differs:"; diff <(echo "$a") <(echo "$b"); return 1; }
}
same_inspect() { # same_inspect NEAR FAR NAME: Id, RepoDigests, RootFS.Layers equal
    local f='.[0] | {Id, RepoDigests, Layers: .RootFS.Layers}' a b
    a=$("$A" --store "$1" inspect "$3" | jq -S "$f") || return 1
    b=$("$A" --store "$2" inspect "$3" | jq -S "$f") || return 1
    echo "$a"
    [ "$a" = "$b" ] || { echo "far side:"; echo "$b"; return 1; }
}

# describe_delta ID NEAR NAME ARCHIVE: what the delta archive does with each layer of the
# image (left out, delta against which layer, shipped whole), from its
# airlock-incremental.json and its member sizes; and review's SIZE / SHIPPED.
describe_delta() {
    local id=$1 near=$2 name=$3 y=$4 inc members l n_om=0 n_de=0 n_wh=0 wh_bytes=0 txt="" ref ps cs sz
    inc=$(tar -xOf "$y" airlock-incremental.json 2>/dev/null || echo '{}')
    members=$(tar -tvf "$y")
    for l in $("$A" --store "$near" inspect "$name" | jq -r '.[0].Layers[].Digest'); do
        if jq -e --arg d "$l" '(.omitted // []) | index($d)' <<<"$inc" >/dev/null; then
            n_om=$((n_om + 1)); txt+="${LNAME[$l]:-$l} left out (the far side has it); "
        elif jq -e --arg d "$l" '(.deltas // []) | map(.digest) | index($d)' <<<"$inc" >/dev/null; then
            n_de=$((n_de + 1))
            read -r ref ps cs < <(jq -r --arg d "$l" '.deltas[] | select(.digest == $d) | "\(.reference) \(.patchSize) \(.correctionsSize)"' <<<"$inc")
            txt+="${LNAME[$l]:-$l} as a delta against ${LNAME[$ref]:-$ref} (patch $(fmt_int "$ps") + corrections $(fmt_int "$cs") bytes); "
        else
            n_wh=$((n_wh + 1))
            sz=$(awk -v m="blobs/sha256/${l#sha256:}" '$6 == m {print $3}' <<<"$members")
            wh_bytes=$((wh_bytes + ${sz:-0}))
            txt+="${LNAME[$l]:-$l} **shipped whole** ($(fmt_int "${sz:-0}") bytes); "
        fi
    done
    C_NDELTA[$id]=$n_de; C_NWHOLE[$id]=$n_wh
    C_CONTENT[$id]="${txt%; }. Review: $(awk -v n="$name" '$1 == n {print "SIZE " $4 ", SHIPPED " $5}' "$LOGS/$id-review.txt")."
    [ "$n_wh" = 0 ] || log "[$id] $n_wh layer(s) of $name shipped whole in the delta archive ($wh_bytes bytes)"
}

declare -a CASES=()
declare -A C_CONTENT C_NDELTA C_NWHOLE
declare -A C_NAME C_OLD C_GOAL C_GOALPCT C_DOCKER C_LAYER C_DELTA C_MAKE_S C_MAKE_RSS C_APPLY_S C_APPLY_RSS C_STATUS C_SAVE_MSG C_LAYER_MSG

# run_case ID LABEL OLD-ARCHIVE NEW-ARCHIVE OLD-NAME NEW-NAME GOAL-PERCENT GOAL-OP
run_case() {
    local id=$1 label=$2 old=$3 new=$4 oldname=$5 name=$6 goal=$7 op=$8
    local d=$W/$id i p near far fresh x y docker_in
    CASES+=("$id"); C_NAME[$id]=$label; C_OLD[$id]=$oldname; C_GOALPCT[$id]=$goal; C_GOAL[$id]="$op $goal%"
    C_STATUS[$id]=ok
    mkdir -p "$d"
    near=$d/near; far=$d/far
    log "[$id] near store: $oldname + $name; far store: $oldname"
    "$A" --store "$near" load -q -i "$old" >>"$LOGS/$id-setup.log" 2>&1
    "$A" --store "$near" load -q -i "$new" >>"$LOGS/$id-setup.log" 2>&1
    "$A" --store "$far" load -q -i "$old" >>"$LOGS/$id-setup.log" 2>&1
    "$A" --store "$far" inventory -o "$d/inv.json" >>"$LOGS/$id-setup.log" 2>&1

    # docker save | gzip -6 of the new image, through the engine
    docker_in=$d/docker-in.tar
    log "[$id] docker load + docker save $name | gzip -6"
    "$A" --store "$near" save "$name" -o "$docker_in" >>"$LOGS/$id-docker.log" 2>&1
    DOCKER_IMAGES+=("$name")
    if docker load -i "$docker_in" >>"$LOGS/$id-docker.log" 2>&1; then
        C_DOCKER[$id]=$(docker save "$name" | gzip -6 | wc -c)
    else
        C_DOCKER[$id]="failed"; log "[$id] docker load failed (see $LOGS/$id-docker.log)"
    fi
    docker rmi "$name" >>"$LOGS/$id-docker.log" 2>&1 || true
    rm -f "$docker_in"

    # layer-level incremental
    x=$d/layer-level.tar
    log "[$id] save --incremental-from --no-deltas"
    if "$A" --store "$near" save "$name" --incremental-from "$d/inv.json" --no-deltas -o "$x" \
            >"$LOGS/$id-layer-level.log" 2>&1; then
        C_LAYER[$id]=$(stat -c %s "$x")
    else
        C_LAYER[$id]=failed; C_STATUS[$id]=failed
        record_error "airlock --store $near save $name --incremental-from $d/inv.json --no-deltas -o $x" "$LOGS/$id-layer-level.log"
    fi
    C_LAYER_MSG[$id]=$(cat "$LOGS/$id-layer-level.log")

    # delta: make
    y=$d/delta.tar
    p=$LOGS/$id-make
    : >"$p.times"
    for i in $(seq 1 "$RUNS"); do
        rm -f "$y"; sync
        log "[$id] save --incremental-from (deltas), run $i/$RUNS"
        if ! timed "$p" "$A" --store "$near" save "$name" --incremental-from "$d/inv.json" -o "$y"; then
            C_STATUS[$id]=failed
            record_error "airlock --store $near save $name --incremental-from $d/inv.json -o $y" "$p.log"
            break
        fi
        sha256sum "$y" | cut -d' ' -f1 >>"$p.sha"
        if [ "$i" = 1 ]; then C_SAVE_MSG[$id]=$(cat "$p.err"); fi
    done
    if [ "${C_STATUS[$id]}" != ok ]; then C_DELTA[$id]=failed; return 0; fi
    C_DELTA[$id]=$(stat -c %s "$y")
    C_MAKE_S[$id]=$(secs_med "$p"); C_MAKE_RSS[$id]=$(rss_max "$p")
    check "[$id] the delta archive is the same bytes on every run ($RUNS runs)" \
        bash -c '[ "$(sort -u "$1" | wc -l)" = 1 ] && cat "$1"' _ "$p.sha"
    "$A" review "$y" >"$LOGS/$id-review.txt" 2>&1 || true
    check "[$id] airlock review reads the delta archive" "$A" review "$y"
    describe_delta "$id" "$near" "$name" "$y"

    # delta: apply, each run on a fresh copy of the far store
    p=$LOGS/$id-apply
    : >"$p.times"
    for i in $(seq 1 "$RUNS"); do
        fresh=$d/far-run
        rm -rf "$fresh"; cp -a "$far" "$fresh"; sync
        log "[$id] load -q -i delta.tar into a fresh copy of the far store, run $i/$RUNS"
        if ! timed "$p" "$A" --store "$fresh" load -q -i "$y"; then
            C_STATUS[$id]=failed
            record_error "airlock --store $fresh load -q -i $y" "$p.log"
            break
        fi
    done
    if [ -s "$p.times" ]; then
        C_APPLY_S[$id]=$(secs_med "$p"); C_APPLY_RSS[$id]=$(rss_max "$p")
    fi
    check "[$id] airlock load of the delta archive succeeds" [ "${C_STATUS[$id]}" = ok ]
    check "[$id] every blob of $name (manifest, config, layers) is on the far side, same bytes" \
        same_blobs "$near" "$fresh" "$name"
    check "[$id] airlock --store FAR fsck passes after the load" "$A" --store "$fresh" fsck
    check "[$id] inspect $name: Id, RepoDigests, RootFS.Layers equal near and far" \
        same_inspect "$near" "$fresh" "$name"
    check "[$id] $oldname is still intact on the far side" same_blobs "$near" "$fresh" "$oldname"

    # the layer-level archive loads too (the reference point works)
    if [ "${C_LAYER[$id]}" != failed ]; then
        rm -rf "$fresh"; cp -a "$far" "$fresh"
        check "[$id] the layer-level (--no-deltas) archive loads and gives the same blobs" \
            bash -c '"$1" --store "$2" load -q -i "$3" && exit 0; exit 1' _ "$A" "$fresh" "$x"
        check "[$id] ... with every blob of $name identical" same_blobs "$near" "$fresh" "$name"
    fi
    rm -rf "$fresh"
}

run_case wheel "wheel bump: app:1 -> app:2 (numpy 2.1.0 -> 2.1.1, pandas 2.2.2 -> 2.2.3)" \
    "$AR/app1.tar" "$AR/app2.tar" bench.local/app:1 bench.local/app:2 15 "<="
run_case base "rebuilt base: base:1 -> base:2 (same files, new mtimes)" \
    "$AR/base1.tar" "$AR/base2.tar" bench.local/base:1 bench.local/base:2 1 "<"

# ---------------------------------------------------------------- alternatives (app layer only)
declare -a ALT=()
declare -A ALT_LABEL ALT_SIZE ALT_SECS ALT_RSS
log "alternatives on the app layer alone"
for lvl in "${ZSTD_LEVELS[@]}"; do
    id=zstd$lvl; p=$LOGS/alt-$id; : >"$p.times"
    ALT+=("$id"); ALT_LABEL[$id]="\`zstd --patch-from=app1.tar --long=31 -T1 -$lvl app2.tar\`"
    for i in $(seq 1 "$RUNS"); do
        rm -f "$W/patch.zst"; sync
        log "  zstd -$lvl --patch-from, run $i/$RUNS"
        timed "$p" zstd -q -f --patch-from="$L/app1.tar" --long=31 -T1 "-$lvl" "$L/app2.tar" -o "$W/patch.zst"
    done
    ALT_SIZE[$id]=$(stat -c %s "$W/patch.zst"); ALT_SECS[$id]=$(secs_med "$p"); ALT_RSS[$id]=$(rss_max "$p")
    check "zstd -$lvl patch applies: zstd -d --patch-from=app1.tar gives app2.tar" \
        bash -c 'zstd -q -d --long=31 --patch-from="$1" -c "$2" | cmp - "$3"' _ "$L/app1.tar" "$W/patch.zst" "$L/app2.tar"
done
rm -f "$W/patch.zst"
log "  content-defined chunking (python)"
p=$LOGS/alt-cdc; : >"$p.times"
timed "$p" python3 "$HELPER" cdc "$L/app1.tar" "$L/app2.tar" "$W/cdc-missing.bin"
CDC_JSON=$(grep '^{' "$p.log" | tail -n1)
zstd -q -f -3 -T1 "$W/cdc-missing.bin" -o "$W/cdc-missing.zst"
ALT+=(cdc); ALT_LABEL[cdc]="chunk dedup: gear CDC 16/64/256 KiB, app2 chunks not in app1, \`zstd -3\`"
ALT_SIZE[cdc]=$(stat -c %s "$W/cdc-missing.zst"); ALT_SECS[cdc]=$(secs_med "$p"); ALT_RSS[cdc]=$(rss_max "$p")
rm -f "$W/cdc-missing.bin" "$W/cdc-missing.zst"
# context rows: the whole layer
zstd -q -f -3 -T1 "$L/app2.tar" -o "$W/app2.zst"
ALT+=(whole_zstd); ALT_LABEL[whole_zstd]="whole app2.tar, \`zstd -3\` (no reference)"
ALT_SIZE[whole_zstd]=$(stat -c %s "$W/app2.zst"); rm -f "$W/app2.zst"
ALT+=(whole_gz); ALT_LABEL[whole_gz]="whole app2.tar, \`gzip -6 -n\` (the layer blob)"
ALT_SIZE[whole_gz]=${LGZ[app2]}

check "the airlock binary is the same file at the end of the run (sha256 ${A_SHA:0:12}...)" \
    bash -c '[ "$(sha256sum "$1" | cut -d" " -f1)" = "$2" ]' _ "$A" "$A_SHA"

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=
LOAD_MED=$(awk '{print $1}' "$LOGS/load.txt" | median || echo "?")
LOAD_MAX=$(awk '{print $1}' "$LOGS/load.txt" | sort -g | tail -n1)
LOAD_N=$(wc -l <"$LOGS/load.txt")
LOAD_BUSY=$(awk '$2 > 0' "$LOGS/load.txt" | wc -l)
T_TOTAL=$(( $(date +%s) - T_START ))

# ---------------------------------------------------------------- report
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b/1e6}'; }
size_cell() { # bytes (MB)
    case "$1" in ''|failed) echo "${1:-–}" ;; *)
        if [ "$1" -ge 1000000 ]; then echo "$(fmt_int "$1") ($(mb "$1"))"; else echo "$(fmt_int "$1")"; fi ;; esac
}
mib() { awk -v k="$1" 'BEGIN {printf "%.0f MiB", k/1024}'; }
ver() { "$@" 2>&1 | head -n1 | tr -d '\r' || true; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { p = 100*a/b; if (p < 1) printf "%.2f%%", p; else printf "%.1f%%", p }'; }

CPU=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
GIT_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "no commits yet")
if [ -n "$(cd "$REPO" && git status --porcelain 2>/dev/null | head -n1 || true)" ]; then GIT_REV="$GIT_REV, uncommitted changes"; fi
FS=$(df -PT "$W" | awk 'NR==2 {print $2}')
CMD="bench/delta.sh${ARGS[*]:+ ${ARGS[*]}}"
[ "$AIRLOCK" = "$REPO/target/release/airlock" ] || CMD="AIRLOCK=$AIRLOCK $CMD"
WHEELS1=$(cd "$CACHE/wheels-1" && ls -- *.whl | sed 's/-cp311.*\|-py2.*//' | paste -sd' ')
WHEELS2=$(cd "$CACHE/wheels-2" && ls -- *.whl | sed 's/-cp311.*\|-py2.*//' | paste -sd' ')

section() {
    local id r goal met
    echo "$SECTION"
    echo
    echo "Generated by \`$CMD\` on $(date -u '+%Y-%m-%d %H:%M UTC') (whole run: ${T_TOTAL} s)."
    echo
    echo "- Machine: $CPU, \`nproc\` = $(nproc), $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo),"
    echo "  kernel $(uname -r), work dir on $FS; load average at start $LOAD_START, at end $LOAD_END;"
    echo "  1-min load sampled every 5 s: median $LOAD_MED, max ${LOAD_MAX:-?}."
    if [ "$LOAD_BUSY" -gt 0 ]; then
        echo "- **A cargo/rustc process was running in $LOAD_BUSY of $LOAD_N samples**: it competed for the"
        echo "  $(nproc) cores, so the times are high and noisy (the sizes are not affected)."
    fi
    echo "- airlock: $(ver "$A" --version), binary \`$A\` ($(fmt_int "$(stat -c %s "$A")") bytes,"
    echo "  sha256 \`$A_SHA\`, modified $(date -u -r "$A" '+%Y-%m-%d %H:%M:%S UTC'));"
    echo "  checkout at git $GIT_REV. $(ver zstd --version | sed 's/^\*\*\* //; s/, by Yann Collet.*//; s/ \*\*\*$//'); $(ver gzip --version);"
    echo "  $(ver tar --version); Docker Engine $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?');"
    echo "  $(ver python3 --version); $(ver debootstrap --version)."
    echo "- Base layer: $BASE_INFO; tarred with"
    echo "  \`tar --sort=name --numeric-owner\` (proc, sys, dev contents left out). Rebuilt base: the"
    echo "  same tar extracted, \`find ROOTFS -exec touch -h -d @$REBUILD_MTIME {} +\`, re-tarred the same way."
    echo "- App layers: wheels (cp311, manylinux2014_x86_64, \`pip download --only-binary=:all: --no-deps\`)"
    echo "  unpacked into \`usr/local/lib/python3.11/site-packages/\` and tarred sorted by \`bench/delta_image.py\`"
    echo "  (zip entry times, owner 0:0). Release 1: $WHEELS1."
    echo "  Release 2: $WHEELS2."
    echo "- Images (OCI archives by \`bench/delta_image.py\`, layers \`gzip -6 -n\`): \`bench.local/app:1\` ="
    echo "  base + app1, \`bench.local/app:2\` = base + app2, \`bench.local/base:1\` = base,"
    echo "  \`bench.local/base:2\` = rebuilt base. Far store: the old image (\`airlock load\`); near store: both;"
    echo "  \`airlock --store far inventory -o inv.json\`."
    echo
    echo "| layer | tar bytes | files | gzip -6 -n bytes |"
    echo "|---|--:|--:|--:|"
    for l in base base2 app1 app2; do
        printf '| %s | %s | %s | %s |\n' "$l" "$(size_cell "${LSIZE[$l]}")" "$(fmt_int "${LFILES[$l]}")" "$(size_cell "${LGZ[$l]}")"
    done
    echo
    echo "Sizes in bytes. \`docker save | gzip -6\`: the new image loaded into the engine (\`docker load\` of"
    echo "airlock's docker-format save), \`docker save NAME | gzip -6 | wc -c\`, all its layers. Layer-level:"
    echo "\`airlock save NEW --incremental-from inv.json --no-deltas\`; delta: the same without \`--no-deltas\`."
    echo "Make = that save, apply = \`airlock --store FAR load -q -i delta.tar\` on a fresh copy of the far"
    echo "store: median wall seconds of $RUNS runs and the largest peak RSS (\`/usr/bin/time %M\`) over them."
    echo
    echo "| case | docker save \\| gzip | airlock layer-level incremental | airlock delta | delta / layer-level | goal | make (s, RSS) | apply (s, RSS) |"
    echo "|---|--:|--:|--:|--:|---|--:|--:|"
    for id in "${CASES[@]}"; do
        if [[ ${C_DELTA[$id]} =~ ^[0-9]+$ && ${C_LAYER[$id]} =~ ^[0-9]+$ ]]; then
            r=$(pct "${C_DELTA[$id]}" "${C_LAYER[$id]}")
            if awk -v a="${C_DELTA[$id]}" -v b="${C_LAYER[$id]}" -v g="${C_GOALPCT[$id]}" -v op="${C_GOAL[$id]%% *}" \
                'BEGIN { p = 100*a/b; exit !((op == "<" && p < g) || (op == "<=" && p <= g)) }'; then
                met="met"; else met="**not met**"; fi
        else r="–"; met="not measured"; fi
        printf '| %s | %s | %s | %s | %s | %s: %s | %s | %s |\n' "${C_NAME[$id]}" \
            "$(size_cell "${C_DOCKER[$id]}")" "$(size_cell "${C_LAYER[$id]}")" "$(size_cell "${C_DELTA[$id]}")" \
            "$r" "${C_GOAL[$id]}" "$met" \
            "$( [ -n "${C_MAKE_S[$id]:-}" ] && echo "${C_MAKE_S[$id]} s, $(mib "${C_MAKE_RSS[$id]}")" || echo failed)" \
            "$( [ -n "${C_APPLY_S[$id]:-}" ] && echo "${C_APPLY_S[$id]} s, $(mib "${C_APPLY_RSS[$id]}")" || echo failed)"
    done
    echo
    echo "What each delta archive does with the new image's layers (its \`airlock-incremental.json\`):"
    echo
    for id in "${CASES[@]}"; do echo "- $id: ${C_CONTENT[$id]:-not made}"; done
    echo
    echo "What \`save\` printed on stderr (first run of each; exit status 0 unless said below):"
    echo
    echo '```'
    for id in "${CASES[@]}"; do
        echo "# $id, --no-deltas:"; printf '%s\n' "${C_LAYER_MSG[$id]:-(nothing)}"
        echo "# $id, deltas:"; printf '%s\n' "${C_SAVE_MSG[$id]:-(nothing)}"
    done
    echo '```'
    echo
    echo "### Alternatives for the wheel-bump app layer alone"
    echo
    echo "app1.tar -> app2.tar ($(size_cell "${LSIZE[app2]}") of tar). zstd 1 thread; median of $RUNS runs (the chunking"
    echo "estimate: one pure-python pass over both tars, timed for reference only). Chunking: $CDC_JSON."
    echo
    echo "| method | bytes | vs layer gzip | seconds | peak RSS |"
    echo "|---|--:|--:|--:|--:|"
    for id in "${ALT[@]}"; do
        printf '| %s | %s | %s | %s | %s |\n' "${ALT_LABEL[$id]}" "$(size_cell "${ALT_SIZE[$id]}")" \
            "$(pct "${ALT_SIZE[$id]}" "${LGZ[app2]}")" "${ALT_SECS[$id]:-–}" \
            "$( [ -n "${ALT_RSS[$id]:-}" ] && mib "${ALT_RSS[$id]}" || echo –)"
    done
    if [[ ${C_DELTA[wheel]} =~ ^[0-9]+$ ]]; then
        printf '| airlock delta archive of app:2 (whole archive: delta, corrections, manifest, config) | %s | %s | %s | %s |\n' \
            "$(size_cell "${C_DELTA[wheel]}")" "$(pct "${C_DELTA[wheel]}" "${LGZ[app2]}")" "${C_MAKE_S[wheel]}" "$(mib "${C_MAKE_RSS[wheel]}")"
    fi
    echo
    echo "### Checks"
    echo
    for c in "${CHECKS[@]}"; do echo "- $c"; done
    if [ "${#ERRORS[@]}" -gt 0 ]; then
        echo
        echo "### airlock errors"
        echo
        for e in "${ERRORS[@]}"; do echo '```'; printf '%s\n' "$e"; echo '```'; done
    fi
    echo
    echo "Reproduce: \`$CMD\` (as root, with a Docker Engine; the base rootfs and the wheels are"
    echo "cached in \`--cache\`, default /var/tmp/airlock-bench-delta-cache; \`\$BENCH_DIR\`, default"
    echo "/tmp/airlock-bench-delta, is wiped at start). Logs stay in \`$LOGS/\`."
}

section >"$W/section.md"
if [ "$WRITE" = 1 ]; then
    python3 "$REPO/bench/replace_section.py" "$OUT_MD" "$W/section.md" "$SECTION"
    log "wrote the section into $OUT_MD"
else
    cat "$W/section.md"
fi
FAILS=0
for c in "${CHECKS[@]}"; do case "$c" in FAILED*) FAILS=$((FAILS + 1)) ;; esac; done
log "done in ${T_TOTAL} s: ${#CHECKS[@]} checks, $FAILS failed, ${#ERRORS[@]} airlock errors"
[ "$FAILS" = 0 ] && [ "${#ERRORS[@]}" = 0 ]
