"""Brazilian Portuguese: chosen from the browser's language or the switch, and complete."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

from django.urls import reverse

from tests.ui.conftest import set_state

LOCALE = Path(__file__).resolve().parents[2] / "locale" / "pt_BR" / "LC_MESSAGES"


def test_accept_language_pt_br_gives_portuguese(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    body = client.get(reverse("my_vms"), HTTP_ACCEPT_LANGUAGE="pt-BR,pt;q=0.9").content.decode()
    assert '<html lang="pt-br">' in body
    assert "Minhas VMs" in body
    assert "em execução" in body
    assert "My VMs" not in body


def test_english_by_default(client, alice):
    client.force_login(alice)
    body = client.get(reverse("my_vms"), HTTP_ACCEPT_LANGUAGE="en-US").content.decode()
    assert "My VMs" in body and "Minhas VMs" not in body


def test_language_switch(client, alice):
    client.force_login(alice)
    page = client.get(reverse("my_vms")).content.decode()
    assert 'action="/i18n/setlang/"' in page and 'for="language-select"' in page
    r = client.post(reverse("set_language"), {"language": "pt-br", "next": reverse("my_vms")})
    assert r["Location"] == reverse("my_vms")
    assert "Minhas VMs" in client.get(reverse("my_vms"), HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_the_language_switch_returns_to_the_page_unless_it_answered_a_post(client, ivy):
    client.force_login(ivy)
    page = client.get(reverse("lab_create")).content.decode()
    assert f'name="next" type="hidden" value="{reverse("lab_create")}"' in page
    # A form shown again with its errors answers a POST; some such pages only take POSTs.
    page = client.post(reverse("lab_create"), {"name": ""}).content.decode()
    assert f'name="next" type="hidden" value="{reverse("home")}"' in page


def test_service_messages_are_translated(client, alice, alice_guest):
    set_state(alice_guest, "")
    client.force_login(alice)
    client.post(reverse("set_language"), {"language": "pt-br"})
    r = client.post(reverse("guest_action", args=[alice_guest.pk, "reboot"]), follow=True)
    assert "Não é possível reiniciar a VM de alice: ela está parada." in r.content.decode()


def test_guest_page_in_portuguese(client, alice, alice_guest):
    set_state(alice_guest, "r")
    client.force_login(alice)
    body = client.get(reverse("guest_detail", args=[alice_guest.pk]), HTTP_ACCEPT_LANGUAGE="pt-BR").content.decode()
    for text in ("Reiniciar", "Desligar", "Destruir (puxar o cabo)", "Suas <a", "passwd root"):
        assert text in body, text


def _po_entries(text: str) -> list[tuple[str, str, bool]]:
    """(msgid, msgstr, fuzzy) for each entry; plural entries give msgstr[0]."""
    entries = []
    for block in text.split("\n\n")[1:]:
        fuzzy = "#, fuzzy" in block
        strings: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            m = re.match(r'^(msgid|msgstr(?:\[0\])?|msgid_plural|msgstr\[1\]|msgctxt) "(.*)"$', line)
            if m:
                key = m.group(1)
                strings[key] = m.group(2)
            elif line.startswith('"') and key:
                strings[key] += line[1:-1]
        if "msgid" in strings:
            entries.append((strings["msgid"], strings.get("msgstr", strings.get("msgstr[0]", "")), fuzzy))
    return entries


def test_catalogue_is_complete_and_compiled():
    entries = _po_entries((LOCALE / "django.po").read_text(encoding="utf-8"))
    assert len(entries) > 300
    untranslated = [msgid for msgid, msgstr, fuzzy in entries if not msgstr or fuzzy]
    assert not untranslated, f"untranslated or fuzzy: {untranslated[:10]}"
    with (LOCALE / "django.mo").open("rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    compiled = {(k if isinstance(k, str) else k[0]).split("\x04")[-1] for k in catalog}
    missing = [msgid for msgid, _msgstr, _fuzzy in entries if msgid.replace('\\"', '"') not in compiled]
    assert not [m for m in missing if "\\" not in m], f"the .mo is older than the .po: {missing[:10]}"
