#!/usr/bin/env bash
# Benchmark airlock against the raw limits of this machine and the real peers
# (skopeo, podman), in one run, and write docs/benchmarks.md.
# (`airlock serve` against the distribution registry: bench/serve.sh, which adds its own
# section to docs/benchmarks.md; this script rewrites the whole file, so run that after.)
#
#   bench/run.sh [--size-mib N] [--layers N] [--runs N] [--rss-4g] [--no-build]
#
#   --size-mib N  size of each layer's file in MiB (default 256; 16 = quick run)
#   --layers N    number of layers (default 4)
#   --runs N      timed runs per row, the median is kept (default 3)
#   --rss-4g      also build a 4 x 1 GiB image and record peak RSS of airlock
#                 load and save on it (target: <= 64 MiB)
#   --no-build    skip `cargo build --release -p airlock-cli`
#
# Environment: BENCH_DIR (work dir, wiped at start; default /tmp/airlock-bench),
#              AIRLOCK (binary; default target/release/airlock in the repo),
#              BENCH_OUT (markdown to write; default docs/benchmarks.md).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/airlock-bench}
AIRLOCK=${AIRLOCK:-$REPO/target/release/airlock}
OUT_MD=${BENCH_OUT:-$REPO/docs/benchmarks.md}
IMAGE=localhost/bench/big:1

SIZE_MIB=256
LAYERS=4
RUNS=3
RSS_4G=0
BUILD=1

usage() { sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --size-mib) SIZE_MIB=$2; shift 2 ;;
        --size-mib=*) SIZE_MIB=${1#*=}; shift ;;
        --layers) LAYERS=$2; shift 2 ;;
        --layers=*) LAYERS=${1#*=}; shift ;;
        --runs) RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --rss-4g) RSS_4G=1; shift ;;
        --no-build) BUILD=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in SIZE_MIB LAYERS RUNS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "$v must be a positive integer" >&2; exit 2; }
done

for t in skopeo umoci podman pigz zstd gzip sha256sum tar awk python3 /usr/bin/time; do
    command -v "$t" >/dev/null || { echo "missing tool: $t (see /work/shared/TOOLS.md)" >&2; exit 1; }
done
HAVE_OPENSSL=0; command -v openssl >/dev/null && HAVE_OPENSSL=1

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- work dir
case "$BENCH_DIR" in /|"") echo "refusing BENCH_DIR=$BENCH_DIR" >&2; exit 1 ;; esac
rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"/{logs,tmp}
W=$BENCH_DIR
LOGS=$W/logs

# ---------------------------------------------------------------- build
AIRLOCK_OK=1
if [ "$BUILD" = 1 ]; then
    log "cargo build --release -p airlock-cli"
    if ! (cd "$REPO" && cargo build --release -p airlock-cli) >"$LOGS/cargo-build.log" 2>&1; then
        log "cargo build failed (see $LOGS/cargo-build.log); airlock rows will show failed"
        AIRLOCK_OK=0
    fi
fi
[ -x "$AIRLOCK" ] || { log "no airlock binary at $AIRLOCK"; AIRLOCK_OK=0; }

# ---------------------------------------------------------------- image
# gen_file PATH MIB: half incompressible (urandom), half random words from a
# 256-word vocabulary (bench/gentext.py; zstd -3 gets ~3.5x on it).
gen_file() {
    local path=$1 bytes=$(( $2 * 1024 * 1024 )) half
    half=$(( bytes / 2 ))
    head -c "$half" /dev/urandom >"$path"
    python3 "$REPO/bench/gentext.py" $(( bytes - half )) >>"$path"
}

# build_image DIR LAYERS MIB: DIR/big.tar (docker-archive of $IMAGE)
build_image() {
    local d=$1 n=$2 mib=$3 i
    mkdir -p "$d/gen"
    umoci init --layout "$d/oci" >>"$LOGS/build-image.log" 2>&1
    umoci new --image "$d/oci:big" >>"$LOGS/build-image.log" 2>&1
    for i in $(seq 1 "$n"); do
        rm -rf "$d/gen/root"; mkdir -p "$d/gen/root/layer$i"
        gen_file "$d/gen/root/layer$i/data.bin" "$mib"
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
log "building image: $LAYERS layers x $SIZE_MIB MiB"
build_image "$W" "$LAYERS" "$SIZE_MIB"
BIG=$W/big.tar
BIG_BYTES=$(stat -c %s "$BIG")
log "big.tar: $BIG_BYTES bytes"

# ---------------------------------------------------------------- harness
declare -a ROWS=()
declare -A R_OP R_TOOL R_SECS R_RSS R_STATUS R_LOG

# warm FILE|DIR...: read everything once so the page cache is warm
warm() {
    local p
    for p in "$@"; do
        if [ -d "$p" ]; then
            find "$p" -type f -print0 | xargs -0 -r cat >/dev/null 2>&1 || true
        elif [ -e "$p" ]; then
            cat "$p" >/dev/null
        fi
    done
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) exit 1; print a[int((NR+1)/2)]}'; }

# row ID OPERATION TOOL PREP CMD VERIFY [WARM...]
#   PREP runs (eval'd, untimed) before each run: remove the outputs of CMD.
#   CMD runs under /usr/bin/time via bash -c; stdout/stderr go to logs/ID.log.
#   VERIFY runs (bash -c, untimed) after each run and must succeed, so that a
#   command exiting 0 without doing its work is not reported as fast.
#   Seconds: median wall time (ns clock around the call; /usr/bin/time's %e is
#   only 10 ms resolution); peak RSS: max of %M over the runs.
row() {
    local id=$1 op=$2 tool=$3 prep=$4 cmd=$5 verify=$6; shift 6
    local lf=$LOGS/$id.log tf=$W/tmp/$id.time i t0 t1 rc secs=() rss=()
    ROWS+=("$id"); R_OP[$id]=$op; R_TOOL[$id]=$tool; R_LOG[$id]=$lf
    : >"$lf"
    log "$tool: $op"
    warm "$@"
    for i in $(seq 1 "$RUNS"); do
        eval "$prep"
        # Flush dirty pages left by the previous run, so no row pays for another's writeback.
        sync
        echo "=== run $i: $cmd" >>"$lf"
        t0=$(date +%s%N)
        rc=0
        /usr/bin/time -f '%e %M' -o "$tf" bash -c "$cmd" >>"$lf" 2>&1 || rc=$?
        t1=$(date +%s%N)
        if [ "$rc" -ne 0 ]; then
            echo "=== exit status $rc" >>"$lf"
            R_STATUS[$id]=failed
            log "  FAILED (exit $rc), see $lf"
            return 0
        fi
        if ! bash -c "$verify" >>"$lf" 2>&1; then
            echo "=== output check failed: $verify" >>"$lf"
            R_STATUS[$id]=failed
            log "  FAILED (exit 0 but output check failed: $verify), see $lf"
            return 0
        fi
        secs+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", (b-a)/1e9}')")
        rss+=("$(tail -n1 "$tf" | awk '{print $2}')")
    done
    R_STATUS[$id]=ok
    R_SECS[$id]=$(printf '%s\n' "${secs[@]}" | median)
    R_RSS[$id]=$(printf '%s\n' "${rss[@]}" | sort -g | tail -n1)
    log "  ${R_SECS[$id]} s, $(mbs "${R_SECS[$id]}") MB/s, peak RSS ${R_RSS[$id]} KiB"
}

# skip ID OPERATION TOOL REASON
skip() {
    ROWS+=("$1"); R_OP[$1]=$2; R_TOOL[$1]=$3; R_STATUS[$1]="skipped: $4"; R_LOG[$1]=
}

mbs() { awk -v b="$BIG_BYTES" -v s="$1" 'BEGIN { if (s <= 0) print "inf"; else printf "%.0f", b/1e6/s }'; }
ok() { [ "${R_STATUS[$1]:-}" = ok ]; }

declare -a CHECKS=()
check() { # check DESCRIPTION CMD...
    local d=$1; shift
    if "$@" >>"$LOGS/checks.log" 2>&1; then CHECKS+=("ok: $d"); else CHECKS+=("FAILED: $d (see logs/checks.log)"); fi
}

A="$AIRLOCK"
P="podman --storage-driver vfs --events-backend none"

# ---------------------------------------------------------------- raw limits
row cat      "read (cat > /dev/null)" "cat"       ":" "cat '$BIG' >/dev/null" : "$BIG"
row cp       "copy file"              "cp"        "rm -f '$W/cp.tar'" "cp '$BIG' '$W/cp.tar'" "cmp -s '$BIG' '$W/cp.tar'" "$BIG"
rm -f "$W/cp.tar"
row sha256   "sha256"                 "sha256sum" ":" "sha256sum '$BIG' >/dev/null" : "$BIG"
if [ "$HAVE_OPENSSL" = 1 ]; then
    row openssl "sha256" "openssl dgst" ":" "openssl dgst -sha256 '$BIG' >/dev/null" : "$BIG"
else
    skip openssl "sha256" "openssl dgst" "openssl not installed"
fi
row pigz     "gzip -6 compress"       "pigz -6 ($(nproc) threads)" "rm -f '$W/x.gz'" "pigz -6 -c '$BIG' >'$W/x.gz'" "test -s '$W/x.gz'" "$BIG"
rm -f "$W/x.gz"
row zstd     "zstd -3 compress"       "zstd -T0 -3" "rm -f '$W/x.zst'" "zstd -q -T0 -3 -c '$BIG' >'$W/x.zst'" "test -s '$W/x.zst'" "$BIG"
rm -f "$W/x.zst"
if [ "$BIG_BYTES" -le $(( 256 * 1024 * 1024 )) ]; then
    row gzip "gzip -6 compress" "gzip -6" "rm -f '$W/x.gz'" "gzip -6 -c '$BIG' >'$W/x.gz'" "test -s '$W/x.gz'" "$BIG"
    rm -f "$W/x.gz"
else
    skip gzip "gzip -6 compress" "gzip -6" "image > 256 MiB (slow)"
fi

# ---------------------------------------------------------------- airlock
AS=$W/al-store     # store filled by the load row, used by the save rows
if [ "$AIRLOCK_OK" = 1 ]; then
    row al_load "load docker-archive" "airlock" "rm -rf '$AS'" \
        "'$A' --store '$AS' load -i '$BIG' -q" "'$A' --store '$AS' images | grep -q bench/big" "$BIG"
    row al_save "save docker (plain)" "airlock" "rm -f '$W/al-save.tar'" \
        "'$A' --store '$AS' save -o '$W/al-save.tar' --format docker --compress none $IMAGE" "test -s '$W/al-save.tar'" "$AS"
    if ok al_save; then
        check "skopeo inspect reads airlock's plain docker save" skopeo inspect "docker-archive:$W/al-save.tar"
        check "podman loads airlock's plain docker save" bash -c "$P --root '$W/chk-root' --runroot '$W/chk-run' load -i '$W/al-save.tar'"
        rm -rf "$W/chk-root" "$W/chk-run"
    fi
    rm -f "$W/al-save.tar"
    row al_save_gz "save docker --compress gzip" "airlock" "rm -f '$W/al-save.tar.gz'" \
        "'$A' --store '$AS' save -o '$W/al-save.tar.gz' --format docker --compress gzip $IMAGE" "test -s '$W/al-save.tar.gz'" "$AS"
    if ok al_save_gz; then
        check "gzip -t accepts airlock's gzip save" gzip -t "$W/al-save.tar.gz"
    fi
    rm -f "$W/al-save.tar.gz"
    row al_save_zst "save docker --compress zstd" "airlock" "rm -f '$W/al-save.tar.zst'" \
        "'$A' --store '$AS' save -o '$W/al-save.tar.zst' --format docker --compress zstd $IMAGE" "test -s '$W/al-save.tar.zst'" "$AS"
    if ok al_save_zst; then
        check "zstd -t accepts airlock's zstd save" zstd -q -t "$W/al-save.tar.zst"
        row al_load_zst "load docker-archive (zstd)" "airlock" "rm -rf '$W/al-store2'" \
            "'$A' --store '$W/al-store2' load -i '$W/al-save.tar.zst' -q" "'$A' --store '$W/al-store2' images | grep -q bench/big" "$W/al-save.tar.zst"
        rm -rf "$W/al-store2"
    else
        skip al_load_zst "load docker-archive (zstd)" "airlock" "zstd save failed"
        R_STATUS[al_load_zst]=failed
    fi
    rm -f "$W/al-save.tar.zst"
    row al_export "export (flatten image to rootfs tar)" "airlock" "rm -f '$W/al-export.tar'" \
        "'$A' --store '$AS' export -o '$W/al-export.tar' $IMAGE" "test -s '$W/al-export.tar'" "$AS"
    if ok al_export; then
        row al_import "import rootfs tar" "airlock" "rm -rf '$W/al-imp'" \
            "'$A' --store '$W/al-imp' import '$W/al-export.tar' bench/imported:1" \
            "'$A' --store '$W/al-imp' images | grep -q bench/imported" "$W/al-export.tar"
    else
        skip al_import "import rootfs tar" "airlock" "export failed"
        R_STATUS[al_import]=failed
    fi
    rm -rf "$W/al-imp"
    rm -rf "$AS"
else
    for r in "al_load|load docker-archive" "al_save|save docker (plain)" \
             "al_save_gz|save docker --compress gzip" "al_save_zst|save docker --compress zstd" \
             "al_load_zst|load docker-archive (zstd)" "al_export|export (flatten image to rootfs tar)" \
             "al_import|import rootfs tar"; do
        skip "${r%%|*}" "${r#*|}" airlock "binary not built"
        R_STATUS[${r%%|*}]=failed
    done
fi

# ---------------------------------------------------------------- peers
row sk_to_oci "docker-archive -> OCI dir" "skopeo copy" "rm -rf '$W/sk-oci'" \
    "skopeo copy --quiet docker-archive:'$BIG' oci:'$W/sk-oci':big" "test -s '$W/sk-oci/index.json'" "$BIG"
if ok sk_to_oci; then
    row sk_to_da "OCI dir -> docker-archive" "skopeo copy" "rm -f '$W/sk-out.tar'" \
        "skopeo copy --quiet oci:'$W/sk-oci':big docker-archive:'$W/sk-out.tar':$IMAGE" "test -s '$W/sk-out.tar'" "$W/sk-oci"
else
    skip sk_to_da "OCI dir -> docker-archive" "skopeo copy" "previous step failed"
fi
rm -rf "$W/sk-oci" "$W/sk-out.tar"

PR=$W/pm-root; PRR=$W/pm-run
row pm_load "load docker-archive" "podman (vfs)" "rm -rf '$PR' '$PRR'" \
    "$P --root '$PR' --runroot '$PRR' load -q -i '$BIG'" "$P --root '$PR' --runroot '$PRR' images | grep -q bench/big" "$BIG"
if ok pm_load; then
    row pm_save "save docker-archive" "podman (vfs)" "rm -f '$W/pm-out.tar'" \
        "$P --root '$PR' --runroot '$PRR' save -q --format docker-archive -o '$W/pm-out.tar' $IMAGE" "test -s '$W/pm-out.tar'" "$PR"
    PCID=$($P --root "$PR" --runroot "$PRR" create $IMAGE /bin/sh 2>>"$LOGS/pm_create.log" || true)
    if [ -n "$PCID" ]; then
        row pm_export "export (container rootfs tar)" "podman (vfs)" "rm -f '$W/pm-export.tar'" \
            "$P --root '$PR' --runroot '$PRR' export -o '$W/pm-export.tar' $PCID" "test -s '$W/pm-export.tar'" "$PR"
    else
        skip pm_export "export (container rootfs tar)" "podman (vfs)" "podman create failed"
    fi
    if [ -s "$W/pm-export.tar" ]; then
        row pm_import "import rootfs tar" "podman (vfs)" "$P --root '$PR' --runroot '$PRR' rmi -f localhost/bench/imported:1 >/dev/null 2>&1 || true" \
            "$P --root '$PR' --runroot '$PRR' import -q '$W/pm-export.tar' localhost/bench/imported:1" \
            "$P --root '$PR' --runroot '$PRR' images | grep -q bench/imported" "$W/pm-export.tar"
    else
        skip pm_import "import rootfs tar" "podman (vfs)" "podman export failed"
    fi
else
    skip pm_save "save docker-archive" "podman (vfs)" "podman load failed"
    skip pm_export "export (container rootfs tar)" "podman (vfs)" "podman load failed"
    skip pm_import "import rootfs tar" "podman (vfs)" "podman load failed"
fi
rm -rf "$PR" "$PRR" "$W/pm-out.tar" "$W/pm-export.tar"

# ---------------------------------------------------------------- Docker Engine
if docker info >/dev/null 2>&1; then
    DK_GONE="docker rmi -f $IMAGE >/dev/null 2>&1 || true"
    eval "$DK_GONE"
    row dk_load "load docker-archive" "docker load" "$DK_GONE" \
        "docker load -q -i '$BIG'" "docker image inspect $IMAGE >/dev/null" "$BIG"
    row dk_save "save" "docker save" "rm -f '$W/dk.tar'" \
        "docker save -o '$W/dk.tar' $IMAGE" "test -s '$W/dk.tar'"
    row dk_save_gz "save, gzip -6" "docker save + gzip" "rm -f '$W/dk.tar.gz'" \
        "docker save $IMAGE | gzip -6 >'$W/dk.tar.gz'" "test -s '$W/dk.tar.gz'"
    row dk_save_pigz "save, pigz -6" "docker save + pigz" "rm -f '$W/dk.tar.gz'" \
        "docker save $IMAGE | pigz -6 >'$W/dk.tar.gz'" "test -s '$W/dk.tar.gz'"
    rm -f "$W/dk.tar" "$W/dk.tar.gz"
    if [ "$AIRLOCK_OK" = 1 ]; then
        row al_eng_save "save docker-daemon: (engine -> archive, verified)" "airlock" "rm -rf '$W/al-eng' '$W/al-eng.tar'" \
            "'$A' --store '$W/al-eng' save docker-daemon:$IMAGE -o '$W/al-eng.tar'" "test -s '$W/al-eng.tar'"
        rm -rf "$W/al-eng" "$W/al-eng.tar"
        row al_eng_load "load --into docker-daemon" "airlock" "$DK_GONE; rm -rf '$W/al-eng'" \
            "'$A' --store '$W/al-eng' load --into docker-daemon -q -i '$BIG'" "docker image inspect $IMAGE >/dev/null" "$BIG"
        rm -rf "$W/al-eng"
    fi
    eval "$DK_GONE"
else
    for r in "dk_load|load docker-archive|docker load" "dk_save|save|docker save"; do
        IFS='|' read -r id op tool <<<"$r"
        skip "$id" "$op" "$tool" "no Docker Engine answers"
    done
fi

# ---------------------------------------------------------------- registry
if command -v docker-registry >/dev/null 2>&1; then
    REG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    REG=127.0.0.1:$REG_PORT
    reg_restart() {
        [ -n "${REG_PID:-}" ] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
        rm -rf "$W/reg"; mkdir -p "$W/reg"
        printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n' "$W/reg/data" "$REG" >"$W/reg/config.yml"
        docker-registry serve "$W/reg/config.yml" >>"$LOGS/registry.log" 2>&1 &
        REG_PID=$!
        for _ in $(seq 1 50); do curl -sf "http://$REG/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
        log "registry did not start"; return 1
    }
    reg_restart
    if [ "$AIRLOCK_OK" = 1 ]; then
        "$A" --store "$W/al-reg" load -q -i "$BIG"
        row al_push "push to registry" "airlock" "reg_restart" \
            "'$A' --store '$W/al-reg' push $IMAGE $REG/bench/big:1 -q" "curl -sf http://$REG/v2/bench/big/manifests/1 -H 'Accept: application/vnd.oci.image.manifest.v1+json' >/dev/null" "$W/al-reg"
        row al_pull "pull from registry" "airlock" "rm -rf '$W/al-pull'" \
            "'$A' --store '$W/al-pull' pull $REG/bench/big:1 -q" "'$A' --store '$W/al-pull' images | grep -q bench/big"
        rm -rf "$W/al-pull" "$W/al-reg"
    fi
    row sk_push "push to registry (docker-archive source)" "skopeo copy" "reg_restart" \
        "skopeo copy --quiet --dest-tls-verify=false docker-archive:'$BIG' docker://$REG/bench/big:1" \
        "curl -sf http://$REG/v2/bench/big/tags/list >/dev/null" "$BIG"
    row sk_pull "pull from registry (to oci dir)" "skopeo copy" "rm -rf '$W/sk-pull'" \
        "skopeo copy --quiet --src-tls-verify=false docker://$REG/bench/big:1 oci:'$W/sk-pull':big" "test -s '$W/sk-pull/index.json'"
    rm -rf "$W/sk-pull"
    kill "$REG_PID" 2>/dev/null || true
else
    skip al_push "push to registry" "airlock" "docker-registry not installed"
fi

# ---------------------------------------------------------------- 4 GiB RSS
RSS4_DONE=0
declare -A RSS4_KIB RSS4_SECS RSS4_STATUS
if [ "$RSS_4G" = 1 ]; then
    G=$W/rss4g; mkdir -p "$G"
    log "building 4 x 1 GiB image for the RSS check"
    build_image "$G" 4 1024
    RSS4_BYTES=$(stat -c %s "$G/big.tar")
    rss4() { # rss4 KEY VERIFY CMD...
        local k=$1 verify=$2 t0 t1 rc=0; shift 2
        t0=$(date +%s%N)
        /usr/bin/time -f '%e %M' -o "$W/tmp/rss4-$k.time" "$@" >"$LOGS/rss4g-$k.log" 2>&1 || rc=$?
        t1=$(date +%s%N)
        if [ "$rc" = 0 ] && bash -c "$verify" >>"$LOGS/rss4g-$k.log" 2>&1; then
            RSS4_STATUS[$k]=ok
            RSS4_KIB[$k]=$(tail -n1 "$W/tmp/rss4-$k.time" | awk '{print $2}')
            RSS4_SECS[$k]=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b-a)/1e9}')
        else
            RSS4_STATUS[$k]=failed
        fi
        log "  rss4g $k: ${RSS4_STATUS[$k]} ${RSS4_KIB[$k]:-} KiB"
    }
    if [ "$AIRLOCK_OK" = 1 ]; then
        warm "$G/big.tar"
        rss4 load "'$A' --store '$G/store' images | grep -q bench/big" "$A" --store "$G/store" load -i "$G/big.tar" -q
        warm "$G/store"
        rss4 save "test -s '$G/out.tar'" "$A" --store "$G/store" save -o "$G/out.tar" --format docker --compress none "$IMAGE"
    else
        RSS4_STATUS[load]=failed; RSS4_STATUS[save]=failed
    fi
    rm -rf "$G"
    RSS4_DONE=1
fi

# ---------------------------------------------------------------- report
ver() { "$@" 2>&1 | head -n1 | tr -d '\r' || true; }
fmt_int() { awk -v x="$1" 'BEGIN { if (x == "inf") { print x; exit } s = sprintf("%.0f", x); n = ""; while (length(s) > 3) { n = "," substr(s, length(s)-2) n; s = substr(s, 1, length(s)-3) } print s n }'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a >= b)}'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a <= b)}'; }

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
CPU=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
AIRLOCK_VER=$( [ "$AIRLOCK_OK" = 1 ] && ver "$A" --version || true)
[ -n "$AIRLOCK_VER" ] || AIRLOCK_VER=$( [ "$AIRLOCK_OK" = 1 ] && echo "version unknown" || echo "not built")
GIT_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "no commits yet")
if [ -n "$(cd "$REPO" && git status --porcelain 2>/dev/null | head -n1 || true)" ]; then GIT_REV="$GIT_REV, uncommitted changes"; fi
FS=$(df -PT "$W" | awk 'NR==2 {print $2}')
TOTAL_MIB=$(( SIZE_MIB * LAYERS ))

target_row() { # NAME MEASURED THRESHOLD-TEXT VERDICT
    printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"
}

mkdir -p "$(dirname "$OUT_MD")"
{
    echo "# Benchmarks"
    echo
    echo "Generated by \`bench/run.sh$( [ "$SIZE_MIB" != 256 ] && echo " --size-mib $SIZE_MIB")$( [ "$LAYERS" != 4 ] && echo " --layers $LAYERS")$( [ "$RSS_4G" = 1 ] && echo " --rss-4g")\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo
    echo "## Machine"
    echo
    echo "- CPU: $CPU, \`nproc\` = $(nproc)"
    echo "- Memory: $(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo); kernel $(uname -r); work dir on $FS"
    echo "- Load average (1/5/15 min) at start: $LOAD_START; at end: $LOAD_END. Anything else running"
    echo "  on the machine (a cargo build, tests) skews every row; rerun on an idle machine."
    echo "- airlock: $AIRLOCK_VER (git: $GIT_REV)"
    echo "- $(ver skopeo --version); $(ver umoci --version); $(ver podman --version)"
    echo "- pigz $(pigz --version 2>&1 | awk '{print $2}'); $(ver zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//; s/, by.*//')"
    echo "- $(ver gzip --version); $(ver sha256sum --version); $( [ "$HAVE_OPENSSL" = 1 ] && ver openssl version || echo "openssl: not installed")"
    echo
    echo "## Image"
    echo
    echo "\`$IMAGE\`: $LAYERS layers x $SIZE_MIB MiB ($TOTAL_MIB MiB of layer data). Each layer is a tar"
    echo "holding one file: first half from /dev/urandom (incompressible), second half random"
    echo "words from a 256-word vocabulary (\`bench/gentext.py\`; zstd -3 gets ~3.5x, gzip -6 ~3.4x on"
    echo "that half). Built with umoci, then \`skopeo copy oci:... docker-archive:big.tar\`;"
    echo "big.tar ($(fmt_int "$BIG_BYTES") bytes, layers uncompressed) is the input of every load."
    echo
    echo "## Results"
    echo
    echo "MB/s = bytes of big.tar / 1e6 / seconds, for every row (compressed outputs included)."
    echo "Warm page cache (inputs read once before each row); median of $RUNS runs, each into a fresh"
    echo "store / output; peak RSS is the largest \`/usr/bin/time %M\` over the runs."
    echo
    echo "| operation | tool | MB/s | seconds | peak RSS MiB |"
    echo "|---|---|--:|--:|--:|"
    for id in "${ROWS[@]}"; do
        st=${R_STATUS[$id]}
        if [ "$st" = ok ]; then
            printf '| %s | %s | %s | %.3f | %s |\n' "${R_OP[$id]}" "${R_TOOL[$id]}" \
                "$(fmt_int "$(mbs "${R_SECS[$id]}")")" "${R_SECS[$id]}" "$(mib "${R_RSS[$id]}")"
        else
            printf '| %s | %s | %s | – | – |\n' "${R_OP[$id]}" "${R_TOOL[$id]}" "$st"
        fi
    done
    echo
    echo "Notes: skopeo's \`oci:\` destination gzips every layer (its default), and the"
    echo "OCI -> docker-archive row then gunzips them; podman's vfs driver stores a full copy of"
    echo "the rootfs per layer; skopeo pushing to a registry gzips uncompressed layers, airlock"
    echo "sends the blobs as stored (so digests survive). The Docker Engine here is 20.10 with"
    echo "fuse-overlayfs; its rows include the engine's own unpacking and packing."
    echo "These are the peers' default behaviours, measured as they are."
    if [ "$SIZE_MIB" -lt 128 ]; then
        echo "With layers this small, process start-up (a few ms) dominates the fastest rows;"
        echo "use the default size for real numbers."
    fi
    echo

    # ---- targets
    echo "## Targets"
    echo
    echo "| target | measured | threshold | result |"
    echo "|---|--:|--:|---|"
    verdict_mbs() { # ID THRESHOLD-MB/s NAME THRESHOLD-TEXT
        local id=$1 thr=$2 name=$3 ttext=$4 m
        if ok "$id"; then
            m=$(mbs "${R_SECS[$id]}")
            target_row "$name" "$(fmt_int "$m") MB/s" "$ttext" "$(ge "$m" "$thr" && echo PASS || echo MISS)"
        else
            target_row "$name" "${R_STATUS[$id]}" "$ttext" "MISS"
        fi
    }
    verdict_mbs al_load 1000 "airlock load (docker-archive)" ">= 1,000 MB/s"
    verdict_mbs al_save 1500 "airlock save, plain docker" ">= 1,500 MB/s"
    verdict_mbs al_export 800 "airlock export (flatten)" ">= 800 MB/s"
    verdict_mbs al_import 500 "airlock import" ">= 500 MB/s"
    if ok zstd; then
        z=$(mbs "${R_SECS[zstd]}"); zt=$(awk -v z="$z" 'BEGIN {t = 0.9*z; print (t == int(t)) ? t : int(t) + 1}')
        verdict_mbs al_save_zst "$zt" "airlock save --compress zstd" ">= 90% of zstd -T0 -3 = $(fmt_int "$zt") MB/s"
    else
        target_row "airlock save --compress zstd" "-" "zstd row failed" "n/a"
    fi
    if ok pigz; then
        g=$(mbs "${R_SECS[pigz]}"); gt=$(awk -v z="$g" 'BEGIN {t = 0.9*z; print (t == int(t)) ? t : int(t) + 1}')
        verdict_mbs al_save_gz "$gt" "airlock save --compress gzip" ">= 90% of pigz -6 = $(fmt_int "$gt") MB/s"
    else
        target_row "airlock save --compress gzip" "-" "pigz row failed" "n/a"
    fi
    # Against the engine, the same run: airlock must not be slower than the engine's own
    # save / load (it streams: each byte read once, written once, verified on the way).
    verdict_ratio() { # AIRLOCK-ID PEER-ID NAME
        local a=$1 p=$2 name=$3 r
        if ok "$a" && ok "$p"; then
            r=$(awk -v x="${R_SECS[$p]}" -v y="${R_SECS[$a]}" 'BEGIN {printf "%.2f", x / y}')
            target_row "$name" "${r}x ($(fmt_int "$(mbs "${R_SECS[$a]}")") vs $(fmt_int "$(mbs "${R_SECS[$p]}")") MB/s)" ">= 1.00x" \
                "$(ge "$r" 1 && echo PASS || echo MISS)"
        else
            target_row "$name" "not measured (${R_STATUS[$a]:-skipped} / ${R_STATUS[$p]:-skipped})" ">= 1.00x" "MISS"
        fi
    }
    verdict_ratio al_eng_save dk_save "airlock save docker-daemon: / docker save"
    verdict_ratio al_eng_load dk_load "airlock load --into docker-daemon / docker load"
    if [ "$RSS4_DONE" = 1 ]; then
        for k in load save; do
            if [ "${RSS4_STATUS[$k]}" = ok ]; then
                m=$(mib "${RSS4_KIB[$k]}")
                target_row "airlock $k peak RSS, 4 GiB image" "$m MiB (${RSS4_SECS[$k]} s, $(fmt_int "$(awk -v b="$RSS4_BYTES" -v s="${RSS4_SECS[$k]}" 'BEGIN {printf "%.0f", b/1e6/s}')") MB/s, 1 run)" "<= 64 MiB" \
                    "$(le "${RSS4_KIB[$k]}" 65536 && echo PASS || echo MISS)"
            else
                target_row "airlock $k peak RSS, 4 GiB image" "failed" "<= 64 MiB" "MISS"
            fi
        done
    else
        for k in load save; do
            id=al_$k
            if ok "$id"; then
                info="$(mib "${R_RSS[$id]}") MiB on the $TOTAL_MIB MiB image"
            else
                info="${R_STATUS[$id]}"
            fi
            target_row "airlock $k peak RSS, 4 GiB image" "not measured ($info)" "<= 64 MiB" "not run (use --rss-4g)"
        done
    fi
    echo

    if [ "${#CHECKS[@]}" -gt 0 ]; then
        echo "## Output checks"
        echo
        for c in "${CHECKS[@]}"; do echo "- $c"; done
        echo
    fi

    failed=()
    for id in "${ROWS[@]}"; do [ "${R_STATUS[$id]}" = failed ] && failed+=("$id"); done
    if [ "${#failed[@]}" -gt 0 ] || { [ "$RSS4_DONE" = 1 ] && [[ "${RSS4_STATUS[load]}${RSS4_STATUS[save]}" == *failed* ]]; }; then
        echo "## Failures"
        echo
        echo "Logs are in \`$LOGS/\` (stdout+stderr of every run; wiped by the next run)."
        [ "$AIRLOCK_OK" = 1 ] || echo "airlock was not built: see \`$LOGS/cargo-build.log\`."
        echo
        for id in "${failed[@]}"; do
            [ -n "${R_LOG[$id]}" ] && [ -s "${R_LOG[$id]}" ] || continue
            echo "- ${R_TOOL[$id]} ${R_OP[$id]} (\`logs/$id.log\`):"
            echo
            echo '  ```'
            { grep -v '^=== run' "${R_LOG[$id]}" || true; } | tail -n 3 | sed 's/^/  /'
            echo '  ```'
        done
        echo
    fi

    echo "## Reproduce"
    echo
    echo '```sh'
    echo "bench/run.sh                 # 4 x 256 MiB image, writes docs/benchmarks.md"
    echo "bench/run.sh --size-mib 16   # quick smoke run"
    echo "bench/run.sh --rss-4g        # adds the 4 x 1 GiB peak-RSS check (needs ~15 GB in \$BENCH_DIR)"
    echo '```'
    echo
    echo "Needs skopeo, umoci, podman, pigz, zstd (see /work/shared/TOOLS.md); runs as root for"
    echo "podman's private vfs store. \`BENCH_DIR\` (default /tmp/airlock-bench) is wiped at start."
} >"$OUT_MD"

log "wrote $OUT_MD"
