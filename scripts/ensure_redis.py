"""Make sure a Redis server answers, and print the URL to use.

Uses REDIS_URL when it is set; otherwise a server on 127.0.0.1:6379 if one
answers; otherwise starts a private `redis-server` on a free loopback port
(data in var/redis) and prints its URL. Exits 1 with a clear message when
none of that works. Run with the venv's Python (it needs redis-py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    url = os.environ.get("REDIS_URL")
    if url:
        if answers(url):
            print(url)
            return 0
        print(f"ensure_redis: REDIS_URL={url} does not answer PING", file=sys.stderr)
        return 1
    default = "redis://127.0.0.1:6379/0"
    if answers(default):
        print(default)
        return 0
    server = shutil.which("redis-server")
    if not server:
        print(
            "ensure_redis: no Redis answers on 127.0.0.1:6379 and redis-server is not installed "
            "(apt-get install redis-server, or set REDIS_URL)",
            file=sys.stderr,
        )
        return 1
    data = ROOT / "var" / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    subprocess.run(
        [
            server,
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--pidfile",
            str(data / "redis.pid"),
            "--logfile",
            str(data / "redis.log"),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(50):
        if answers(url):
            print(url)
            return 0
        time.sleep(0.1)
    print(
        f"ensure_redis: started redis-server on port {port} but it does not answer; see {data}/redis.log",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
