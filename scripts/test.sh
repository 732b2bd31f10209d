#!/bin/bash
# Run the whole test suite: lint, then pytest with a real Redis and real RQ
# workers. Uses DATABASE_URL when set (CI: PostgreSQL), else SQLite.
set -euo pipefail
cd "$(dirname "$0")/.."
REDIS_URL=$(.venv/bin/python scripts/ensure_redis.py)
# Tests use their own Redis database so a running demo keeps its queues.
REDIS_URL=${REDIS_URL%/*}/${XENPANEL_TEST_REDIS_DB:-13}
export REDIS_URL
export SECRET_KEY=${SECRET_KEY:-test-only-not-secret}
.venv/bin/ruff check .
.venv/bin/ruff format --check .
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc = 5 ]; then echo "test.sh: pytest collected no tests; that is a failure"; exit 1; fi
exit $rc
