"""deploy/README.md's upgrade block, run on a panel server whose PostgreSQL database holds a lab.

The previous release is the newest `v*` tag before HEAD, else the newest commit before a migration change,
so that the upgrade crosses at least one; either only if HEAD keeps its migrations as they were
(previous_release()). That code is
installed in a scratch root (test_deploy_scratch.py), with its own units running, its migrations and
a lab with two students' guests; the block then runs as written, to this checkout as it is now
(uncommitted work included: the test's repository holds it as one more commit on top of HEAD).
Every row from before is still there afterwards with the same values, and the panel, restarted on
the new code, shows the lab.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.core.test_deploy_guide import guide_sections, panel_guide, run_in
from tests.core.test_deploy_scratch import (
    DEMO_LAB,
    DEMO_PASSWORD,
    ROOT,
    Browser,
    Scratch,
    postgres_bindir,
    snapshot_repository,
)

DB_PASSWORD = "upgrade-db-5e2a"
MIGRATIONS = "labs/migrations"
SERVICES = ("xenpanel-web", "xenpanel-asgi", "xenpanel-sync")  # and xenpanel-rqworker@default

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL's throwaway cluster runs as the postgres account"),
    pytest.mark.skipif(postgres_bindir() is None, reason="PostgreSQL is not installed (scripts/setup.sh --dev)"),
    pytest.mark.timeout(300),
]


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout.strip()


def previous_release() -> str:
    """The newest `v*` tag, else the newest commit before a migration change, whose migrations HEAD keeps as
    they were: a release never shipped one that was later rewritten (the empty placeholders reserved during
    one session were filled in later, and a database that applied them as empty would never get their
    tables), so no upgrade starts from such a commit."""
    head = git("rev-parse", "HEAD")
    tags = [
        git("rev-parse", f"{t}^{{commit}}")
        for t in git("tag", "--list", "v*", "--merged", "HEAD", "--sort=-v:refname").split()
    ]
    changes = git("log", "--format=%H", "--", MIGRATIONS).split()
    for commit in [*tags, *(f"{c}^" for c in changes if git("rev-list", "--parents", "-n1", c).count(" "))]:
        commit = git("rev-parse", commit)
        if commit != head and _migrations_kept(commit):
            return commit
    pytest.fail(f"no earlier commit has migrations that HEAD keeps unchanged ({len(changes)} looked at)")


def _migrations_kept(commit: str) -> bool:
    """Every migration `commit` has is in HEAD byte for byte, and HEAD has more (the upgrade crosses one)."""
    files = set(git("ls-tree", "--name-only", f"{commit}:{MIGRATIONS}").split())
    at_head = set(git("ls-tree", "--name-only", f"HEAD:{MIGRATIONS}").split())
    if not files < at_head:
        return False
    return not git("diff", "--name-only", commit, "HEAD", "--", *(f"{MIGRATIONS}/{f}" for f in files))


def rows(s: Scratch) -> dict[tuple[str, object], dict]:
    dump = json.loads(s.manage("dumpdata", "auth.user", "auth.group", "labs").stdout)
    return {(o["model"], o["pk"]): o["fields"] for o in dump}


@pytest.fixture(scope="module")
def upgraded():
    if git("rev-parse", "--is-shallow-repository") == "true":
        pytest.skip("a shallow clone has no previous release to upgrade from")
    s = Scratch.create("xenpanel-upgrade-")
    try:
        snapshot_repository(s.root / "xenpanel.git")
        previous = previous_release()
        s.install_packages("postgresql", "redis-server")
        s.psql(f"CREATE ROLE xenpanel LOGIN PASSWORD '{DB_PASSWORD}'")
        s.psql("CREATE DATABASE xenpanel OWNER xenpanel")
        app = s.install_project(s.root / "xenpanel.git", commit=previous)
        s.write_env_file(
            SECRET_KEY="upgrade-test-" + "k" * 50,
            DATABASE_URL=f"postgres://xenpanel:{DB_PASSWORD}@127.0.0.1:5432/xenpanel",
            REDIS_URL="redis://127.0.0.1:6379/0",
        )
        env = s.path("/etc/xenpanel/xenpanel.env")
        env.write_text(s.rewrite(env.read_text()))  # this root's ports
        # The previous release: migrated, the demo's data and a lab, its units running.
        s.manage("migrate", "-v0")
        s.manage("seed_demo")
        lab = int(s.manage("shell", "-v0", "-c", DEMO_LAB).stdout.split()[0])
        for unit in app.glob("deploy/xenpanel-*.service"):
            (s.path("/etc/systemd/system") / unit.name).write_text(unit.read_text())
        old_units = [u for u in SERVICES if s.path(f"/etc/systemd/system/{u}.service").exists()]
        s.systemctl("enable", "--now", *old_units, "xenpanel-rqworker@default")
        before = rows(s)
        web_before = s.pid("xenpanel-web.service")

        guide = panel_guide()
        _, upgrade = guide_sections(guide)
        guide.run(upgrade, {}, run_in(s))
        yield s, previous, lab, before, rows(s), web_before
    finally:
        s.destroy()


def test_the_upgrade_crosses_a_migration_to_the_current_code(upgraded):
    s, previous, *_ = upgraded
    app = s.path("/opt/xenpanel")
    main = subprocess.run(
        ["git", "-C", str(s.root / "xenpanel.git"), "rev-parse", "main"], check=True, capture_output=True, text=True
    ).stdout.strip()
    here = subprocess.run(["git", "-C", str(app), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    assert here.stdout.strip() == main != previous
    old = set(git("ls-tree", "--name-only", previous, "labs/migrations/").split())
    new = {f"labs/migrations/{p.name}" for p in (ROOT / "labs" / "migrations").glob("0*.py")}
    assert new - old, "no migration between the previous release and now"
    plan = s.manage("showmigrations", "labs", "--plan").stdout
    assert "[ ]" not in plan and all(Path(m).stem in plan for m in new)


def test_nothing_is_lost(upgraded):
    _, _, _, before, after, _ = upgraded
    assert before.keys() <= after.keys(), sorted(before.keys() - after.keys())
    for key, fields in before.items():
        kept = {k: v for k, v in after[key].items() if k in fields}
        assert kept == {k: v for k, v in fields.items() if k in after[key]}, key
        assert fields.keys() <= after[key].keys(), (key, fields.keys() - after[key].keys())


def test_the_panel_restarted_on_the_new_code_shows_the_lab(upgraded):
    s, _, lab, _, _, web_before = upgraded
    units = {f"{u}.service" for u in SERVICES} | {"xenpanel-rqworker@default.service"}
    assert units <= set(s.running())
    assert {p.name for p in s.path("/etc/systemd/system/multi-user.target.wants").iterdir()} == units
    assert s.pid("xenpanel-web.service") != web_before
    b = Browser("panel.example.edu", s.ports["web"], None, scheme="http")
    assert b.login("instructor", DEMO_PASSWORD).status == 302
    page = b.get(f"/labs/{lab}/")
    assert page.status == 200
    assert "net101-student1" in page.text and "net101-student2" in page.text
