"""The README's promises match the repository: the two commands, every setting, the demo logins, the layout."""

from __future__ import annotations

import io
import re
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command

from labs.management.commands.seed_demo import DEMO_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def make_recipe(target: str) -> list[str]:
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = lines.index(f"{target}:")
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip().lstrip("@"))
    return recipe


def test_the_two_commands_come_first_and_exist():
    first_block = README.split("```sh", 1)[1].split("```", 1)[0]
    assert "make run" in first_block and "make test" in first_block
    assert make_recipe("run") == ["scripts/setup.sh", ".venv/bin/python scripts/run.py"]
    assert make_recipe("test") == ["scripts/setup.sh --dev", "scripts/test.sh $(ARGS)"]


def test_ci_runs_make_test_on_postgresql():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert "DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/" in ci


def test_every_setting_read_from_the_environment_is_in_the_table():
    source = (ROOT / "xenpanel" / "settings.py").read_text()
    read = set(re.findall(r'(?:getenv|env[a-z]*)\(\s*"([A-Z][A-Z0-9_]+)"', source))
    assert len(read) > 15
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", README, re.M))
    assert read - documented == set(), "add these to the README's configuration table"
    assert documented - read == set(), "the README documents settings that no longer exist"


def test_demo_logins_are_the_seeded_ones(db):
    call_command("seed_demo", stdout=io.StringIO())
    assert f"`{DEMO_PASSWORD}`" in README
    users = get_user_model().objects.order_by("username")
    for user in users:
        assert f"`{user.username}`" in README, user.username
        assert user.check_password(DEMO_PASSWORD)
    assert users.get(username="admin").is_staff
    assert users.get(username="instructor").groups.filter(name="instructors").exists()


def test_every_path_in_the_layout_exists():
    layout = README.split("## Layout", 1)[1].split("##", 1)[0]
    paths = re.findall(r"^\| (.+?) \|", layout, re.M)
    checked = 0
    for cell in paths:
        for path in re.findall(r"`([\w./-]+)`", cell):
            assert (ROOT / path).exists(), path
            checked += 1
    assert checked >= 12


def test_every_test_directory_is_described():
    on_disk = {
        f"tests/{p.name}/" for p in (ROOT / "tests").iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    }
    for directory in on_disk:
        assert f"`{directory}`" in README, directory
