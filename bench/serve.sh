#!/usr/bin/env bash
# Benchmark `airlock serve` (the store served as a read-only OCI registry) against
# the CNCF distribution registry (Debian's docker-registry) serving the same image,
# digest for digest, from its own storage: same clients, same run, interleaved.
# Writes the section "## Registry serving (airlock serve vs distribution)" of
# docs/benchmarks.md (replaced if it is there, appended if not; the rest of the file
# is left byte for byte as it was).
#
#   bench/serve.sh [--size-mib N] [--layers N] [--runs N] [--clients N] [--no-write]
#
#   --size-mib N  size of each layer's file in MiB (default 256; 16 = quick run)
#   --layers N    number of layers (default 4)
#   --runs N      timed runs per row and server, the median is kept (default 3)
#   --clients N   concurrent `skopeo copy` pulls in the concurrent row (default 16)
#   --no-write    print the section on stdout, leave docs/benchmarks.md alone
#
# Environment: BENCH_DIR (work dir, wiped at start; default /tmp/airlock-bench-serve),
#              AIRLOCK (binary; default target/release/airlock in the repo; it is
#              not built here), BENCH_OUT (markdown to edit; default docs/benchmarks.md).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/airlock-bench-serve}
AIRLOCK=${AIRLOCK:-$REPO/target/release/airlock}
OUT_MD=${BENCH_OUT:-$REPO/docs/benchmarks.md}
IMAGE=localhost/bench/big:1
REPO_PATH=bench/big         # the path pulled from both servers
TAG=1
SECTION="## Registry serving (airlock serve vs distribution)"

SIZE_MIB=256
LAYERS=4
RUNS=3
CLIENTS=16
WRITE=1
ARGS=("$@")

usage() { sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --size-mib) SIZE_MIB=$2; shift 2 ;;
        --size-mib=*) SIZE_MIB=${1#*=}; shift ;;
        --layers) LAYERS=$2; shift 2 ;;
        --layers=*) LAYERS=${1#*=}; shift ;;
        --runs) RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --clients=*) CLIENTS=${1#*=}; shift ;;
        --no-write) WRITE=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in SIZE_MIB LAYERS RUNS CLIENTS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done

for t in skopeo umoci docker-registry curl jq tar awk python3; do
    command -v "$t" >/dev/null || { echo "missing tool: $t (see /work/shared/TOOLS.md)" >&2; exit 1; }
done
[ -x "$AIRLOCK" ] || { echo "no airlock binary at $AIRLOCK (build it, or set AIRLOCK)" >&2; exit 1; }
A=$AIRLOCK

log() { printf '[serve-bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- work dir
case "$BENCH_DIR" in /|"") echo "refusing BENCH_DIR=$BENCH_DIR" >&2; exit 1 ;; esac
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{logs,out}
W=$BENCH_DIR
LOGS=$W/logs

# ---------------------------------------------------------------- servers, cleanup
REG_PID=; SRV_PID=; SAMPLER_PID=; CLIENT_PIDS=()
STOPPED=
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
stop_pid() { # stop_pid PID: SIGTERM, wait up to 10 s, then SIGKILL; how it ended goes in STOPPED
    local p=$1 i rc
    STOPPED=gone
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 100); do
        alive "$p" || { rc=0; wait "$p" 2>/dev/null || rc=$?; STOPPED="exited with status $rc within $(( i / 10 )).$(( i % 10 )) s"; return 0; }
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    STOPPED="ignored SIGTERM for 10 s, was killed"
}
cleanup() {
    local p
    for p in "${CLIENT_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -z "$SAMPLER_PID" ] || kill "$SAMPLER_PID" 2>/dev/null || true
    [ -z "$SRV_PID" ] || stop_pid "$SRV_PID"
    [ -z "$REG_PID" ] || stop_pid "$REG_PID"
    SRV_PID=; REG_PID=
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- image
# build_image DIR LAYERS MIB: DIR/big.tar (docker-archive of $IMAGE), each layer a tar
# of one file of /dev/urandom (incompressible, so no client's compression shortcut
# changes the bytes moved). Same route as bench/run.sh: umoci, then skopeo.
build_image() {
    local d=$1 n=$2 mib=$3 i
    mkdir -p "$d/gen"
    umoci init --layout "$d/oci" >>"$LOGS/build-image.log" 2>&1
    umoci new --image "$d/oci:big" >>"$LOGS/build-image.log" 2>&1
    for i in $(seq 1 "$n"); do
        rm -rf "$d/gen/root"; mkdir -p "$d/gen/root/layer$i"
        head -c $(( mib * 1024 * 1024 )) /dev/urandom >"$d/gen/root/layer$i/data.bin"
        tar -C "$d/gen/root" -cf "$d/gen/layer$i.tar" "layer$i"
        rm -rf "$d/gen/root"
        umoci raw add-layer --image "$d/oci:big" "$d/gen/layer$i.tar" >>"$LOGS/build-image.log" 2>&1
        rm -f "$d/gen/layer$i.tar"
    done
    umoci config --image "$d/oci:big" --config.cmd /bin/sh >>"$LOGS/build-image.log" 2>&1
    skopeo copy --quiet "oci:$d/oci:big" "docker-archive:$d/big.tar:$IMAGE" >>"$LOGS/build-image.log" 2>&1
    rm -rf "$d/gen" "$d/oci"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "building image: $LAYERS layers x $SIZE_MIB MiB of /dev/urandom"
build_image "$W" "$LAYERS" "$SIZE_MIB"
STORE=$W/store
log "airlock load into $STORE"
"$A" --store "$STORE" load -q -i "$W/big.tar" >>"$LOGS/setup.log" 2>&1
rm -f "$W/big.tar"

# ---------------------------------------------------------------- distribution
REG_PORT=$(free_port)
REG=127.0.0.1:$REG_PORT
mkdir -p "$W/reg"
# Access log on, as for airlock serve below (one line per request on both sides).
cat >"$W/reg/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $W/reg/data
http:
  addr: $REG
EOF
log "docker-registry on $REG"
docker-registry serve "$W/reg/config.yml" >"$LOGS/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 1 100); do curl -sf "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "http://$REG/v2/" >/dev/null || { log "docker-registry did not start (see $LOGS/registry.log)"; exit 1; }
log "airlock push $IMAGE $REG/$REPO_PATH:$TAG"
"$A" --store "$STORE" push -q "$IMAGE" "$REG/$REPO_PATH:$TAG" >>"$LOGS/setup.log" 2>&1

# ---------------------------------------------------------------- airlock serve
log "airlock serve --listen 127.0.0.1:0"
"$A" --store "$STORE" serve --listen 127.0.0.1:0 --access-log >"$LOGS/serve.out" 2>"$LOGS/serve.log" &
SRV_PID=$!
SRV=
for _ in $(seq 1 100); do
    SRV=$(sed -n '1s#^Serving .* at http://\(127\.0\.0\.1:[0-9]*\)/v2/.*#\1#p' "$LOGS/serve.out")
    [ -n "$SRV" ] && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
done
[ -n "$SRV" ] || { log "airlock serve did not print its address (see $LOGS/serve.out, serve.log)"; exit 1; }
SERVE_BANNER=$(head -n1 "$LOGS/serve.out")
log "$SERVE_BANNER"

declare -A HOST=([dist]=$REG [airlock]=$SRV)
declare -A PID=([dist]=$REG_PID [airlock]=$SRV_PID)
declare -A SNAME=([dist]="distribution $(docker-registry --version 2>/dev/null | awk '{print $NF}')" [airlock]="airlock serve")
SERVERS=(dist airlock)

status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
RSS_IDLE_dist=$(status_kib "$REG_PID" VmRSS)
RSS_IDLE_airlock=$(status_kib "$SRV_PID" VmRSS)

# ---------------------------------------------------------------- checks
declare -a CHECKS=()
check() { # check DESCRIPTION CMD...
    local d=$1; shift
    echo "=== $d: $*" >>"$LOGS/checks.log"
    if "$@" >>"$LOGS/checks.log" 2>&1; then CHECKS+=("ok: $d"); else CHECKS+=("FAILED: $d (see logs/checks.log)"); fi
}
MT='application/vnd.oci.image.manifest.v1+json'
manifest_digest() { curl -sfI -H "Accept: $MT" "http://$1/v2/$REPO_PATH/manifests/$TAG" | tr -d '\r' | awk -F': ' 'tolower($1) == "docker-content-digest" {print $2}'; }
MD_dist=$(manifest_digest "$REG" || true)
MD_airlock=$(manifest_digest "$SRV" || true)
same_digest() { [ -n "$MD_dist" ] && [ "$MD_dist" = "$MD_airlock" ] && echo "$MD_dist"; }
check "both servers give the same manifest digest for $REPO_PATH:$TAG" same_digest
curl -sf -H "Accept: $MT" "http://$SRV/v2/$REPO_PATH/manifests/$TAG" >"$W/manifest.json"
mapfile -t BLOBS < <(jq -r '.config.digest, .layers[].digest' "$W/manifest.json")
IMG_BYTES=$(jq '[.config.size, .layers[].size] | add' "$W/manifest.json")
IMG_BYTES=$(( IMG_BYTES + $(stat -c %s "$W/manifest.json") ))
FIRST_LAYER=$(jq -r '.layers[0].digest' "$W/manifest.json")
range_206() { # HOST: Range request on a layer gives 206 and exactly 100 bytes
    local r
    r=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' -H 'Range: bytes=100-199' "http://$1/v2/$REPO_PATH/blobs/$FIRST_LAYER")
    echo "$1: $r"; [ "$r" = "206 100" ]
}
check "distribution answers a Range GET with 206" range_206 "$REG"
check "airlock serve answers a Range GET with 206" range_206 "$SRV"
read_only() { # an upload must be refused by airlock serve without --read-write
    local c
    c=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$SRV/v2/$REPO_PATH/blobs/uploads/")
    echo "POST /v2/$REPO_PATH/blobs/uploads/ -> $c"; [ "${c:0:1}" = 4 ]
}
check "airlock serve (no --read-write) refuses an upload with 4xx" read_only
check "airlock serve also serves the image by its full name" \
    curl -sf -o /dev/null -H "Accept: $MT" "http://$SRV/v2/localhost/$REPO_PATH/manifests/$TAG"

# ---------------------------------------------------------------- harness
warm() { find "$@" -type f -print0 | xargs -0 -r cat >/dev/null 2>&1 || true; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) exit 1; print a[int((NR+1)/2)]}'; }
hwm_reset() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null; }   # VmHWM := VmRSS
HWM_RESET_OK=1
for s in "${SERVERS[@]}"; do hwm_reset "${PID[$s]}" || HWM_RESET_OK=0; done

declare -a ROWS=()
declare -A R_OP R_SECS R_RSS R_BYTES R_STATUS

# Clients. Each: CLIENT_<name> HOST OUT (does the pull), VERIFY_<name> OUT.
CLIENT_skopeo_oci() { skopeo copy --quiet --src-tls-verify=false "docker://$1/$REPO_PATH:$TAG" "oci:$2:big"; }
VERIFY_skopeo_oci() { jq -e '.manifests | length == 1' "$1/index.json" >/dev/null; }
CLIENT_airlock() { "$A" --store "$2" pull -q "$1/$REPO_PATH:$TAG"; }
VERIFY_airlock() { "$A" --store "$1" images | grep -q "$REPO_PATH"; }
# curl: the manifest and every blob, one after the other, on one connection (the
# server's own speed, with the least client work: no hashing, nothing kept).
CLIENT_curl() {
    local args=(-sf -o /dev/null -H "Accept: $MT" "http://$1/v2/$REPO_PATH/manifests/$TAG") b
    for b in "${BLOBS[@]}"; do args+=(-o /dev/null "http://$1/v2/$REPO_PATH/blobs/$b"); done
    mkdir -p "$2"
    curl -w '%{size_download}\n' "${args[@]}" >"$2/sizes"
}
VERIFY_curl() { [ "$(awk '{s += $1} END {print s}' "$1/sizes")" = "$IMG_BYTES" ]; }
# N concurrent skopeo copy, each into its own dir: transport.
CLIENT_skopeo_many() {
    local i rc=0 p
    mkdir -p "$2"
    CLIENT_PIDS=()
    for i in $(seq 1 "$CLIENTS"); do
        skopeo copy --quiet --src-tls-verify=false "docker://$1/$REPO_PATH:$TAG" "dir:$2/c$i" &
        CLIENT_PIDS+=($!)
    done
    for p in "${CLIENT_PIDS[@]}"; do wait "$p" || rc=$?; done
    CLIENT_PIDS=()
    return "$rc"
}
VERIFY_skopeo_many() {
    local i
    for i in $(seq 1 "$CLIENTS"); do
        [ -s "$1/c$i/manifest.json" ] || { echo "client $i: no manifest.json"; return 1; }
    done
}

# pair ID OPERATION CLIENT BYTES: RUNS runs for each server, interleaved (the order
# flips every run); seconds = median wall time; peak server RSS = VmHWM of the
# server process over the row's runs (reset before the row).
pair() {
    local id=$1 op=$2 client=$3 bytes=$4 i s order t0 t1 rc out
    local -A secs=() failed=()
    ROWS+=("$id"); R_OP[$id]=$op; R_BYTES[$id]=$bytes
    log "$op"
    for s in "${SERVERS[@]}"; do hwm_reset "${PID[$s]}" || true; done
    for i in $(seq 1 "$RUNS"); do
        if [ $(( i % 2 )) = 1 ]; then order="dist airlock"; else order="airlock dist"; fi
        for s in $order; do
            [ -n "${failed[$s]:-}" ] && continue
            out=$W/out/$id-$s
            rm -rf "$out"
            sync    # no run pays for the previous run's writeback
            echo "=== run $i, $s (${HOST[$s]}): $client" >>"$LOGS/$id.log"
            rc=0
            t0=$(date +%s%N)
            "CLIENT_$client" "${HOST[$s]}" "$out" >>"$LOGS/$id.log" 2>&1 || rc=$?
            t1=$(date +%s%N)
            if [ "$rc" != 0 ]; then
                echo "=== exit status $rc" >>"$LOGS/$id.log"; failed[$s]="failed (exit $rc)"
            elif ! "VERIFY_$client" "$out" >>"$LOGS/$id.log" 2>&1; then
                echo "=== output check failed" >>"$LOGS/$id.log"; failed[$s]="failed (output check)"
            else
                secs[$s]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", (b-a)/1e9}') "
            fi
            [ -n "${failed[$s]:-}" ] && log "  $s: ${failed[$s]}, see $LOGS/$id.log"
            rm -rf "$out"
        done
    done
    for s in "${SERVERS[@]}"; do
        R_RSS[$id,$s]=$(status_kib "${PID[$s]}" VmHWM)
        if [ -n "${failed[$s]:-}" ]; then
            R_STATUS[$id,$s]=${failed[$s]}
        else
            R_STATUS[$id,$s]=ok
            R_SECS[$id,$s]=$(printf '%s\n' ${secs[$s]} | median)
            log "  $s: ${R_SECS[$id,$s]} s (runs: ${secs[$s]% }), peak RSS ${R_RSS[$id,$s]} KiB"
        fi
    done
}

# ---------------------------------------------------------------- rows
# What else the machine does meanwhile: 1-min load average, and whether a compiler runs
# (a cargo build in the same checkout skews every row), every 5 s.
( trap 'kill $! 2>/dev/null; exit 0' TERM
  while :; do
      printf '%s %s\n' "$(cut -d' ' -f1 /proc/loadavg)" "$(pgrep -c '^(cargo|rustc|cargo-clippy)$' || true)"
      sleep 5 & wait $!
  done ) >"$LOGS/load.txt" 2>/dev/null &
SAMPLER_PID=$!
warm "$STORE" "$W/reg/data"
pair one_skopeo "single pull, \`skopeo copy docker://... oci:DIR\`" skopeo_oci "$IMG_BYTES"
pair one_airlock "single pull, \`airlock pull\` (fresh store)" airlock "$IMG_BYTES"
pair one_curl "single pull, \`curl\` (manifest + blobs, to /dev/null)" curl "$IMG_BYTES"
warm "$STORE" "$W/reg/data"
pair many "$CLIENTS concurrent \`skopeo copy docker://... dir:DIR\`" skopeo_many $(( IMG_BYTES * CLIENTS ))

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=
LOAD_MED=$(awk '{print $1}' "$LOGS/load.txt" | median || echo "?")
LOAD_MAX=$(awk '{print $1}' "$LOGS/load.txt" | sort -g | tail -n1)
LOAD_N=$(wc -l <"$LOGS/load.txt")
LOAD_BUSY=$(awk '$2 > 0' "$LOGS/load.txt" | wc -l)
# Peak over the whole run: the largest of the rows' peaks (VmHWM was reset per row).
for s in "${SERVERS[@]}"; do
    m=0; for id in "${ROWS[@]}"; do [ "${R_RSS[$id,$s]:-0}" -gt "$m" ] && m=${R_RSS[$id,$s]}; done
    printf -v "RSS_ALL_$s" '%s' "$m"
done
# Errors the servers logged (5xx, or 4xx other than the expected probes).
SRV_5XX=$(awk '$4 ~ /^5/' "$LOGS/serve.log" | wc -l)
SRV_LINES=$(wc -l <"$LOGS/serve.log")
REG_5XX=$(grep -cE '" 5[0-9][0-9] ' "$LOGS/registry.log" || true)
stop_pid "$SRV_PID"; SRV_STOP=$STOPPED; SRV_PID=
stop_pid "$REG_PID"; REG_STOP=$STOPPED; REG_PID=
log "airlock serve on SIGTERM: $SRV_STOP; docker-registry: $REG_STOP"

# ---------------------------------------------------------------- report
fmt_int() { awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); n = ""; while (length(s) > 3) { n = "," substr(s, length(s)-2) n; s = substr(s, 1, length(s)-3) } print s n }'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
mbs() { awk -v b="$1" -v s="$2" 'BEGIN { if (s <= 0) print "inf"; else printf "%.0f", b/1e6/s }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a >= b)}'; }
ver() { "$@" 2>&1 | head -n1 | tr -d '\r' || true; }

CPU=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
GIT_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "no commits yet")
if [ -n "$(cd "$REPO" && git status --porcelain 2>/dev/null | head -n1 || true)" ]; then GIT_REV="$GIT_REV, uncommitted changes"; fi
FS=$(df -PT "$W" | awk 'NR==2 {print $2}')
CMD="bench/serve.sh${ARGS[*]:+ ${ARGS[*]}}"
[ "$AIRLOCK" = "$REPO/target/release/airlock" ] || CMD="AIRLOCK=$AIRLOCK $CMD"

section() {
    local id s r st
    echo "$SECTION"
    echo
    echo "Generated by \`$CMD\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "- Machine: $CPU, \`nproc\` = $(nproc), $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo),"
    echo "  kernel $(uname -r), work dir on $FS; load average at start $LOAD_START, at end $LOAD_END;"
    echo "  1-min load sampled every 5 s while measuring: median $LOAD_MED, max ${LOAD_MAX:-?}."
    if [ "$LOAD_BUSY" -gt 0 ]; then
        echo "- **A cargo/rustc process was running in $LOAD_BUSY of $LOAD_N samples**: it competed for the"
        echo "  $(nproc) cores, so the absolute figures are low and noisy; the servers' runs were"
        echo "  interleaved, so compare the ratios, and rerun on an idle machine for absolute numbers."
    fi
    echo "- airlock: $(ver "$A" --version), binary \`$A\` (modified $(date -u -r "$A" '+%Y-%m-%d %H:%M UTC'));"
    echo "  checkout at git $GIT_REV; ${SNAME[dist]} (Debian docker-registry);"
    echo "  $(ver skopeo --version); $(ver curl --version | awk '{print $1, $2}')."
    echo "- Image: \`$IMAGE\`, $LAYERS layers x $SIZE_MIB MiB of /dev/urandom (uncompressed tar layers),"
    echo "  $(fmt_int "$IMG_BYTES") bytes of manifest, config and layers. Loaded with \`airlock load\`, then"
    echo "  \`airlock push\` into distribution (filesystem storage), so both serve the same digests;"
    echo "  both pulled as \`127.0.0.1:PORT/$REPO_PATH:$TAG\`. Both servers write an access log."
    echo
    echo "Median of $RUNS runs per server, the two servers' runs interleaved (order flipped every"
    echo "run), warm page cache, each run into a fresh output that is then deleted. MB/s = bytes"
    echo "served (image bytes x clients) / 1e6 / seconds. Peak server RSS = the server's VmHWM"
    echo "over that row's runs$( [ "$HWM_RESET_OK" = 1 ] && echo " (reset through /proc/PID/clear_refs before each row)" || echo " (could not be reset: cumulative since start)")."
    echo "Ratio vs distribution = distribution's seconds / this server's seconds (> 1: faster)."
    echo
    echo "| operation | server | seconds | MB/s | peak server RSS MiB | ratio vs distribution |"
    echo "|---|---|--:|--:|--:|--:|"
    for id in "${ROWS[@]}"; do
        for s in "${SERVERS[@]}"; do
            st=${R_STATUS[$id,$s]}
            if [ "$st" = ok ]; then
                if [ "${R_STATUS[$id,dist]}" = ok ]; then
                    r=$(awk -v d="${R_SECS[$id,dist]}" -v x="${R_SECS[$id,$s]}" 'BEGIN {printf "%.2f", d/x}')
                else r="–"; fi
                printf '| %s | %s | %.3f | %s | %s | %s |\n' "${R_OP[$id]}" "${SNAME[$s]}" "${R_SECS[$id,$s]}" \
                    "$(fmt_int "$(mbs "${R_BYTES[$id]}" "${R_SECS[$id,$s]}")")" "$(mib "${R_RSS[$id,$s]}")" "$r"
            else
                printf '| %s | %s | %s | – | %s | – |\n' "${R_OP[$id]}" "${SNAME[$s]}" "$st" "$(mib "${R_RSS[$id,$s]}")"
            fi
        done
    done
    echo
    echo "Server RSS: idle after start $(mib "$RSS_IDLE_airlock") MiB (airlock serve), $(mib "$RSS_IDLE_dist") MiB (distribution);"
    echo "peak over the whole run $(mib "$RSS_ALL_airlock") MiB and $(mib "$RSS_ALL_dist") MiB. On SIGTERM at the end:"
    echo "airlock serve $SRV_STOP, distribution $REG_STOP. Requests answered 5xx: airlock serve"
    echo "$SRV_5XX (of $SRV_LINES logged), distribution $REG_5XX."
    echo "skopeo's \`oci:\` destination gzips each uncompressed layer as it writes it; \`dir:\` keeps the"
    echo "blobs as served. On $(nproc) cores the skopeo rows are bound by the clients (hashing,"
    echo "compressing, writing), so they show whether a server holds a client back; the \`curl\` row"
    echo "is closest to the server's own speed."
    echo
    echo "### Targets"
    echo
    echo "| target | measured | threshold | result |"
    echo "|---|--:|--:|---|"
    for id in one_skopeo one_airlock one_curl many; do
        if [ "${R_STATUS[$id,dist]}" = ok ] && [ "${R_STATUS[$id,airlock]}" = ok ]; then
            r=$(awk -v d="${R_SECS[$id,dist]}" -v x="${R_SECS[$id,airlock]}" 'BEGIN {printf "%.2f", d/x}')
            printf '| %s: airlock serve / distribution | %sx | >= 1.00x | %s |\n' "${R_OP[$id]}" "$r" "$(ge "$r" 1 && echo PASS || echo MISS)"
        else
            printf '| %s: airlock serve / distribution | %s / %s | >= 1.00x | MISS |\n' "${R_OP[$id]}" "${R_STATUS[$id,airlock]}" "${R_STATUS[$id,dist]}"
        fi
    done
    if [ "${R_STATUS[many,airlock]}" = ok ]; then
        printf '| airlock serve peak RSS, %s concurrent pulls | %s MiB | < 64 MiB | %s |\n' "$CLIENTS" \
            "$(mib "${R_RSS[many,airlock]}")" "$( [ "${R_RSS[many,airlock]}" -lt 65536 ] && echo PASS || echo MISS)"
    else
        printf '| airlock serve peak RSS, %s concurrent pulls | %s | < 64 MiB | MISS |\n' "$CLIENTS" "${R_STATUS[many,airlock]}"
    fi
    echo
    echo "### Checks"
    echo
    for c in "${CHECKS[@]}"; do echo "- $c"; done
    if [ "$SIZE_MIB" -lt 128 ]; then
        echo
        echo "With layers this small, process start-up and connection set-up weigh on every row;"
        echo "use the default size for real numbers."
    fi
    echo
    echo "Reproduce: \`bench/serve.sh\` (default 4 x 256 MiB and 16 clients; needs ~20 GiB in"
    echo "\`\$BENCH_DIR\`, default /tmp/airlock-bench-serve, wiped at start), \`bench/serve.sh --size-mib 16\`"
    echo "for a quick run. Logs (clients' output, both servers' access logs) stay in \`$LOGS/\`."
}

section >"$W/section.md"
if [ "$WRITE" = 1 ]; then
    python3 "$REPO/bench/replace_section.py" "$OUT_MD" "$W/section.md" "$SECTION"
    log "wrote the section into $OUT_MD"
else
    cat "$W/section.md"
fi
