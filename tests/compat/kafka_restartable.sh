#!/usr/bin/env bash
# Apache Kafka (single-node KRaft, loopback) on a data directory that survives restarts, for the
# groups programs' resume_after_broker_restart scenario (--broker-command) against Kafka itself.
#
#   tests/compat/kafka_restartable.sh DIR     # prints: kafka ready bootstrap=127.0.0.1:PORT
#
# The first start picks two free ports, writes DIR/server.properties and formats DIR/data; later
# starts reuse both (KRaft records the controller's address, so the ports must stay). Serves until
# SIGTERM or until stdin closes, then stops the broker cleanly. Uses the jars that
# tests/java/kafka-broker.sh fetches (run it once first; `scripts/test compat --kafka` does) and
# the same settings, but keeps its data where kafka-broker.sh deletes it on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
lib="$here/../java/target/kafka-broker/lib"
dir="${1:?usage: kafka_restartable.sh DIR}"

[[ -d "$lib" ]] || { echo "no Kafka jars in $lib: run tests/java/kafka-broker.sh once" >&2; exit 1; }
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

java_cmd=(java -Xmx512m -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$lib/*")

if [[ ! -f "$dir/server.properties" ]]; then
    port="$(free_port)"
    controller_port="$(free_port)"
    cat >"$dir/server.properties.new" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
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
    cat >"$dir/log4j2.properties" <<PROPS
rootLogger.level=INFO
rootLogger.appenderRef.file.ref=file
appender.file.type=File
appender.file.name=file
appender.file.fileName=$dir/server.log
appender.file.layout.type=PatternLayout
appender.file.layout.pattern=[%d] %p %m (%c)%n
PROPS
    cluster_id="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())')"
    # "=" form: a random id may start with "-", which the option parser would take for an option.
    "${java_cmd[@]}" kafka.tools.StorageTool format --standalone --cluster-id="$cluster_id" \
        -c "$dir/server.properties.new" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; exit 1; }
    mv "$dir/server.properties.new" "$dir/server.properties"
fi
port="$(sed -n 's/^advertised.listeners=PLAINTEXT:\/\/127.0.0.1://p' "$dir/server.properties")"

# One log per run: the ready check below must not see the previous run's start line.
[[ -f "$dir/server.log" ]] && mv "$dir/server.log" "$dir/server.log.previous"

broker_pid=""
cleanup() {
    if [[ -n "$broker_pid" ]] && kill -0 "$broker_pid" 2>/dev/null; then
        kill "$broker_pid" 2>/dev/null || true   # SIGTERM: Kafka's controlled shutdown
        wait "$broker_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 0' TERM INT

"${java_cmd[@]}" kafka.Kafka "$dir/server.properties" >>"$dir/stdout.log" 2>&1 &
broker_pid=$!

for _ in $(seq 1 600); do
    if grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; then
        echo "kafka ready bootstrap=127.0.0.1:$port"
        cat <&0 >/dev/null &
        wait $! || true
        exit 0
    fi
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        echo "kafka broker exited during startup:" >&2
        tail -n 40 "$dir/stdout.log" "$dir/server.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done
echo "kafka broker not started after 60 s:" >&2
tail -n 40 "$dir/server.log" >&2 || true
exit 1
