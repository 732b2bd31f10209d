"""Make sure a Redis server answers, and say which URL to use.

Order: REDIS_URL when it is set (it must answer, or we stop with a message);
else a server on 127.0.0.1:6379; else a private `redis-server` started on a
free loopback port (no persistence, files in var/redis). setup.sh installs the
redis-server package when it is missing and it can.

    ensure_redis.py                  print the URL (a private server keeps running)
    ensure_redis.py --run CMD ...    run CMD with REDIS_URL set, then stop the
                                     private server if this call started one
    --db N                           with --run: give CMD database N on that server

run.py imports ensure()/stop() to do the same around the panel. Run with the
venv's Python: it needs redis-py.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_URL = "redis://127.0.0.1:6379/0"
VAR = ROOT / "var" / "redis"


class RedisUnavailable(Exception):
    """No Redis answers and none could be started; the message says what to do."""


def probe(url: str) -> str | None:
    """None when the server at `url` answers PING, else why not."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as e:
        return str(e) or type(e).__name__
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_private() -> tuple[str, subprocess.Popen]:
    server = shutil.which("redis-server")
    if not server:
        raise RedisUnavailable(
            "no Redis answers on 127.0.0.1:6379 and redis-server is not installed; "
            "install it (apt-get install redis-server) or set REDIS_URL"
        )
    VAR.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = VAR / f"redis-{port}.log"
    # Its own session: a Ctrl+C meant for run.py must not stop Redis before
    # the workers that use it have shut down.
    proc = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        + ["--dir", str(VAR), "--logfile", str(log)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if probe(url) is None:
            return url, proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc)
    raise RedisUnavailable(f"started redis-server on port {port} but it does not answer; see {log}")


def ensure() -> tuple[str, subprocess.Popen | None]:
    """The URL of a Redis that answers, and the private server if this call started one."""
    url = os.environ.get("REDIS_URL")
    if url:
        why = probe(url)
        if why:
            raise RedisUnavailable(f"REDIS_URL={redacted(url)} does not answer PING: {why}")
        return url, None
    if probe(DEFAULT_URL) is None:
        return DEFAULT_URL, None
    return start_private()


def stop(proc: subprocess.Popen | None) -> None:
    """Stop a private server started by start_private(); no-op for None."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def with_db(url: str, db: int) -> str:
    """`url` pointing at database `db` (redis:// keeps it in the path, unix:// in ?db=)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        # Not urlunsplit: it turns unix:///path into unix:/path.
        return f"{url.split('?', 1)[0]}?{urlencode(query)}"
    return urlunsplit(parts._replace(path=f"/{db}"))


def redacted(url: str) -> str:
    """`url` fit for a log line: the password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def run(cmd: list[str], url: str, db: int | None) -> int:
    """Run `cmd` with REDIS_URL set; the caller stops the server afterwards."""
    env = dict(os.environ, REDIS_URL=with_db(url, db) if db is not None else url)
    child = subprocess.Popen(cmd, env=env)
    # The terminal sends Ctrl+C to the child as well; wait for it to finish
    # rather than dying first and leaving Redis behind. A SIGTERM sent only to
    # us is passed on.
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    old_term = signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=int, help="with --run: the Redis database number CMD gets")
    parser.add_argument("--run", nargs=argparse.REMAINDER, metavar="CMD", help="run CMD with REDIS_URL set")
    args = parser.parse_args(argv)
    if args.run is not None and not args.run:
        parser.error("--run needs a command")
    try:
        url, private = ensure()
    except RedisUnavailable as e:
        print(f"ensure_redis: {e}", file=sys.stderr)
        return 1
    if private:
        print(f"ensure_redis: started a private redis-server at {url} (pid {private.pid})", file=sys.stderr)
    if args.run is None:
        print(url)
        return 0
    try:
        return run(args.run, url, args.db)
    finally:
        stop(private)


if __name__ == "__main__":
    sys.exit(main())
