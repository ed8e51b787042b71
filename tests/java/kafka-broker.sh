#!/usr/bin/env bash
# Runs Apache Kafka itself (single-node KRaft, loopback only) as the reference peer of the Java check.
#
#   sleep 600 | tests/java/kafka-broker.sh &     # prints: kafka ready bootstrap=127.0.0.1:PORT
#
# Same contract as scripts/mock-cluster.py: one ready line on stdout, then serves until stdin closes
# or SIGTERM; broker logs go to a temporary directory that is removed on exit (tail shown on failure).
# The broker jars come from Maven Central through kafka-broker/pom.xml into the project-local
# repository .tools/m2, so a fresh machine needs nothing else.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
lib="$here/target/kafka-broker/lib"

build_jars() {
    local log="$here/target/kafka-broker-build.log"
    mkdir -p "$here/target"
    if ! mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$repo/.tools/m2" \
            -f "$here/kafka-broker/pom.xml" package >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
    touch "$lib"
}

if [[ ! -d "$lib" || "$here/kafka-broker/pom.xml" -nt "$lib" ]]; then
    echo "fetching Apache Kafka broker jars into $lib" >&2
    build_jars
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work="$(mktemp -d -t tidepool-kafka-XXXXXX)"
broker_pid=""
cleanup() {
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' TERM INT

port="$(free_port)"
controller_port="$(free_port)"
cat >"$work/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$work/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.cleaner.backoff.ms=1000
PROPS
cat >"$work/log4j2.properties" <<PROPS
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$work/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
PROPS

java_cmd=(java -Xmx1g -Dlog4j2.configurationFile="$work/log4j2.properties" -cp "$lib/*")
cluster_id="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())')"
"${java_cmd[@]}" kafka.tools.StorageTool format --standalone --cluster-id="$cluster_id" \
    -c "$work/server.properties" >"$work/format.log" 2>&1 || { cat "$work/format.log" >&2; exit 1; }

"${java_cmd[@]}" kafka.Kafka "$work/server.properties" >"$work/stdout.log" 2>&1 &
broker_pid=$!

# Ready means the broker logged its start, not merely that the port accepts connections.
for _ in $(seq 1 600); do
    if grep -q "Kafka Server started" "$work/server.log" 2>/dev/null; then
        echo "kafka ready bootstrap=127.0.0.1:$port"
        # Serve until stdin closes (or SIGTERM); `wait` keeps the TERM trap responsive. The explicit
        # redirection matters: a background command's stdin is otherwise /dev/null.
        cat <&0 >/dev/null &
        wait $! || true
        exit 0
    fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "kafka broker exited during startup:" >&2
        tail -n 40 "$work/stdout.log" "$work/server.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done
echo "kafka broker not started after 60 s:" >&2
tail -n 40 "$work/server.log" >&2 || true
exit 1
