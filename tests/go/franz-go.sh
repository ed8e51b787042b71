#!/usr/bin/env bash
# franz-go (kgo + kadm) against a broker: tests/go/run.sh franz-go ARGS (see there).
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" franz-go "$@"
