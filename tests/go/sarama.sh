#!/usr/bin/env bash
# sarama against a broker: tests/go/run.sh sarama ARGS (see there).
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" sarama "$@"
