#!/usr/bin/env bash
# kcat (Debian's, on its bundled librdkafka 2.0.2: an old client, which is the point) against a
# broker: idempotent acks=all produce with every codec, keys (-K), headers (-H, one key twice),
# consume from offset 0 without a group (-C -o 0 -e -J), ListOffsets (-Q: earliest, latest, by
# timestamp) and metadata (-L -J). Every record is checked by kcat_support.py verify.
#
#   tests/compat/kcat_roundtrip.sh --bootstrap HOST:PORT[,...] [--records 10000] [--partitions 4]
#                                  [--peer tidepool|kafka|librdkafka-mock] [--timeout 120] [--keep-topic]
#
# kcat cannot create topics, so kcat_support.py creates (and at the end deletes) the topic with
# confluent-kafka's admin API; TIDEPOOL_PYTHON names the Python that has it (default: the
# repository's .venv). kcat cannot set a record's timestamp either: librdkafka stamps CreateTime
# at produce time, so timestamps are checked against each invocation's wall-clock window.
# Exits 0 only when every check passed. Matrix cells (client kcat): codec-*, idempotence (the
# producer runs with enable.idempotence=true) and admin (skip: kcat has no admin API), reported
# by kcat_support.py verify, or failed with the reason if the run stops before it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
python="${TIDEPOOL_PYTHON:-$repo/.venv/bin/python}"

bootstrap=""
records=10000
partitions=4
peer=tidepool
timeout_s=120
keep_topic=0
codecs="none gzip snappy lz4 zstd"

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --bootstrap) bootstrap="$2"; shift 2 ;;
        --records) records="$2"; shift 2 ;;
        --partitions) partitions="$2"; shift 2 ;;
        --peer) peer="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --codecs) codecs="${2//,/ }"; shift 2 ;;
        --keep-topic) keep_topic=1; shift ;;
        -h|--help) usage ;;
        *) echo "kcat_roundtrip: unknown argument $1" >&2; usage ;;
    esac
done
[[ -n "$bootstrap" ]] || { echo "kcat_roundtrip: --bootstrap is required" >&2; usage; }

# fail REASON: the run cannot go on; its matrix cells fail with the reason (when Python is there
# to report them).
fail() {
    echo "== kcat: FAIL ($*)"
    if [[ -x "$python" ]]; then
        "$python" "$here/kcat_support.py" abandon --codecs "${codecs// /,}" --reason "$*" || true
    fi
    exit 1
}

command -v kcat >/dev/null || fail "kcat is not installed (apt-get install kcat)"
[[ -x "$python" ]] || fail "no Python at $python (set TIDEPOOL_PYTHON or run scripts/test to create .venv)"
kcat_version="$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\) .*/kcat \1, librdkafka \2/p')"
kcat_version="${kcat_version:-kcat}"

work="$(mktemp -d "${TMPDIR:-/tmp}/tidepool-kcat.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# A command failing under set -e before verify (which judges the cells) fails the cells too.
trap 'fail "kcat_roundtrip.sh stopped at line $LINENO (exit status $?)"' ERR
topic="compat-kcat-$(date +%s%3N)-$$"
steps="$work/steps.tsv"
: > "$steps"

support() { "$python" "$here/kcat_support.py" "$@"; }

# step NAME OUT LOG CMD...: runs one kcat invocation under a time limit, stdout to OUT and
# stderr to LOG, and records its outcome.
step() {
    local name="$1" out="$2" log="$3"; shift 3
    local status=0
    timeout "$timeout_s" "$@" >"$out" 2>"$log" || status=$?
    if [[ $status -eq 0 ]]; then
        printf 'ok\t%s\t\n' "$name" >> "$steps"
    else
        local reason="exit status $status"
        [[ $status -eq 124 ]] && reason="timed out after ${timeout_s}s"
        printf 'fail\t%s\t%s: %s\n' "$name" "$reason" "$(tail -n 3 "$log" | tr '\n\t' '  ')" >> "$steps"
        echo "   $name failed ($reason); last lines of $log:" >&2
        tail -n 20 "$log" >&2
    fi
    return 0
}

echo "== $kcat_version against $bootstrap (peer $peer), topic $topic"

created="$(support create --bootstrap "$bootstrap" --topic "$topic" --partitions "$partitions" \
    --peer "$peer" --timeout "$timeout_s")" || fail "could not create topic $topic (see the error above)"
partitions="$created"

kcat_common=(-b "$bootstrap" -m 30)

# Produce: one invocation per codec and partition (-p), so that the n-th delivery line of an
# invocation belongs to its n-th input line.
support inputs --dir "$work" --records "$records" --partitions "$partitions" --codecs "${codecs// /,}" \
    > "$work/inputs.txt"
while read -r codec partition input; do
    before="$(date +%s%3N)"
    step "kcat -P ($codec): exits 0" /dev/null "$work/dr-$codec-$partition.log" \
        kcat -P "${kcat_common[@]}" -t "$topic" -p "$partition" -K '\t' \
        -H "codec=$codec" -H dup=first -H dup=second -H empty= \
        -X enable.idempotence=true -X acks=all -X "compression.codec=$codec" -X linger.ms=5 \
        -v -v -l "$input"
    after="$(date +%s%3N)"
    echo "$codec $partition $before $after" >> "$work/windows.txt"
done < "$work/inputs.txt"
echo "   produced $records records per codec ($codecs) over $partitions partitions"

# Consume everything from offset 0 without a group; -e exits at the end of every partition.
step "kcat -C: exits 0" "$work/consumed.jsonl" "$work/consume.log" \
    kcat -C "${kcat_common[@]}" -t "$topic" -o 0 -e -J -X check.crcs=true
echo "   consumed $(wc -l < "$work/consumed.jsonl") records"

# Metadata and ListOffsets earliest (-2) / latest (-1) for every partition.
step "kcat -L: exits 0" "$work/metadata.json" "$work/metadata.log" \
    kcat -L -J "${kcat_common[@]}" -t "$topic"
for which in earliest latest; do
    sentinel=-1; [[ $which == earliest ]] && sentinel=-2
    args=()
    for ((p = 0; p < partitions; p++)); do args+=(-t "$topic:$p:$sentinel"); done
    step "kcat -Q $which: exits 0" "$work/query-$which.json" "$work/query-$which.log" \
        kcat -Q -J "${kcat_common[@]}" "${args[@]}"
done

# ListOffsets by timestamp: probes come from what was consumed, one partition per -t per call.
support probes --dir "$work" --topic "$topic" > "$work/probes.txt"
while read -r number targets; do
    args=()
    for target in $targets; do args+=(-t "$target"); done
    step "kcat -Q by timestamp: exits 0" "$work/query-ts-$number.json" "$work/query-ts-$number.log" \
        kcat -Q -J "${kcat_common[@]}" "${args[@]}"
done < "$work/probes.txt"

if [[ "$peer" == librdkafka-mock ]]; then
    printf 'skip\tadmin: delete topic\tpeer librdkafka-mock has no usable controller\n' >> "$steps"
elif [[ $keep_topic -eq 1 ]]; then
    printf 'skip\tadmin: delete topic\t--keep-topic given\n' >> "$steps"
elif support delete --bootstrap "$bootstrap" --topic "$topic" --timeout "$timeout_s" 2>"$work/delete.log"; then
    printf 'ok\tadmin: delete topic\t\n' >> "$steps"
else
    printf 'fail\tadmin: delete topic\t%s\n' "$(tail -n 3 "$work/delete.log" | tr '\n\t' '  ')" >> "$steps"
fi

trap - ERR
support verify --dir "$work" --topic "$topic" --partitions "$partitions" --records "$records" \
    --codecs "${codecs// /,}" --peer "$peer" --kcat-version "$kcat_version"
