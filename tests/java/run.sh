#!/usr/bin/env bash
# Compatibility check of a Kafka-wire broker with the official Java client (org.apache.kafka:kafka-clients).
#
#   tests/java/run.sh BOOTSTRAP [--tolerate GAP[,GAP...]] [--records-per-codec N] [--partitions N]
#                               [--timeout-seconds N] [--seed N]
#
# Builds the jar first when it is missing or older than pom.xml or any source (Maven, with the
# project-local repository .tools/m2, so a fresh machine needs only Maven Central). Exit 0 only if
# every check passed. KAFKA_CLIENTS_VERSION picks the kafka-clients release (default 4.4.0; 4.3.1
# also resolves); each version gets its own jar. The client's own logs (WARN and up) go to stderr;
# raise them with e.g.
#   JAVA_OPTS=-Dorg.slf4j.simpleLogger.log.org.apache.kafka.clients.NetworkClient=debug
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
version="${KAFKA_CLIENTS_VERSION:-4.4.0}"
jar="$here/target/tidepool-java-compat-$version.jar"

if [[ $# -lt 1 ]]; then
    echo "usage: $0 BOOTSTRAP [flags]  (flags: run the jar with no arguments for its usage)" >&2
    exit 2
fi

needs_build() {
    [[ ! -f "$jar" ]] && return 0
    [[ -n "$(find "$here/pom.xml" "$here/src" -newer "$jar" -print -quit)" ]]
}

if needs_build; then
    echo "building $jar" >&2
    mkdir -p "$here/target"
    log="$here/target/build.log"
    if ! mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$repo/.tools/m2" -DskipTests -Dkafka.version="$version" \
            -f "$here/pom.xml" package >"$log" 2>&1; then
        cat "$log" >&2
        exit 1
    fi
fi

# shellcheck disable=SC2086  # JAVA_OPTS is a list of flags
exec java ${JAVA_OPTS:-} -jar "$jar" "$@"
