#!/bin/bash
# Run the whole test suite: lint and types, then pytest with a real Redis and real RQ
# workers. Uses DATABASE_URL when set (CI: PostgreSQL), else SQLite.
# Arguments go to pytest (make test ARGS="tests/core -x").
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--redis-ready" ]; then
  # Find or start Redis, come back here with REDIS_URL set, and stop a
  # private server afterwards. Tests use their own database (13 unless
  # XENPANEL_TEST_REDIS_DB says otherwise or another run holds it) so a
  # running demo keeps its queues.
  db=${XENPANEL_TEST_REDIS_DB:-}
  if [ -z "$db" ]; then
    # Two runs on one machine (two checkouts, a developer and CI) must not
    # flush each other's queues: take the first of 13..8 no other run holds.
    # The lock fd stays open in ensure_redis.py, i.e. for the whole run.
    for n in 13 12 11 10 9 8; do
      exec {lock}>"/tmp/xenpanel-test-redis-db-$n.lock"
      if flock -n "$lock"; then db=$n; break; fi
      exec {lock}>&-
    done
    [ -n "$db" ] || { echo "test.sh: Redis databases 8-13 are all in use by other test runs" >&2; exit 1; }
  fi
  export XENPANEL_TEST_REDIS_DB=$db
  exec .venv/bin/python scripts/ensure_redis.py --db "$db" --run "$0" --redis-ready "$@"
fi
shift
export SECRET_KEY=${SECRET_KEY:-test-only-not-secret}
db=${DATABASE_URL:-sqlite}; echo "test.sh: database ${db%%:*}, Redis database $XENPANEL_TEST_REDIS_DB"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Types, as Healthchecks checks them: labs/dom0 strictly (pyproject.toml), the rest with django-stubs.
.venv/bin/mypy labs xenpanel
set +e
# The slowest tests and fixtures, so a CI log shows where its time went.
.venv/bin/python -m pytest --durations=30 "$@"
rc=$?
set -e
if [ $rc = 5 ]; then echo "test.sh: pytest collected no tests; that is a failure" >&2; exit 1; fi
exit $rc
