"""The recipe's /etc/profile touches at template build: the `ls` colour alias and TMOUT, each once."""

from __future__ import annotations

from labs.dom0.template import LS_ALIAS_LINE, TMOUT_LINE, TemplateBuilder, render_profile
from tests.e2e.test_template_build import DEBIAN_PROFILE, PARTIAL, FakeDom0Runner, spec


def test_a_build_leaves_the_alias_and_tmout_at_the_end_of_etc_profile():
    runner = FakeDom0Runner()
    log: list[str] = []
    TemplateBuilder(runner, log=log.append).build(spec())
    profile = runner.files[f"{PARTIAL}/etc/profile"].decode()
    assert profile.startswith(DEBIAN_PROFILE)
    assert profile.splitlines()[-2:] == ["alias ls='ls --color=auto'", "export TMOUT=1200"]
    assert any(LS_ALIAS_LINE in line for line in log)
    assert any(LS_ALIAS_LINE in line for line in TemplateBuilder.plan(spec()))


def test_each_line_is_added_once_and_only_when_missing():
    both = render_profile(DEBIAN_PROFILE)
    assert render_profile(both) == both
    # A tree built before the alias was applied gets only the alias.
    old = render_profile(DEBIAN_PROFILE).replace(f"{LS_ALIAS_LINE}\n", "")
    again = render_profile(old)
    assert again.count(TMOUT_LINE) == 1 and again.count(LS_ALIAS_LINE) == 1
    assert again.endswith(f"# xenpanel (as the 2007 recipe): ls lists in colour.\n{LS_ALIAS_LINE}\n")
    # The recipe's own spelling (double quotes) counts as there.
    assert render_profile('alias ls="ls --color=auto"\nexport TMOUT=1200\n').count("alias ls=") == 1
