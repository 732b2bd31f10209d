"""The host pages say when placement skips a host: its last health check found the guests' bridge missing."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labs.models import Host

pytestmark = pytest.mark.django_db

NOTICE = "Bridge xenbr0 missing at the last health check: no new VMs go here."


@pytest.mark.parametrize("page", ["host_list", "host_detail"])
def test_the_host_pages_say_it(client, ivy, host, page):
    client.force_login(ivy)
    url = reverse(page, args=[host.pk] if page == "host_detail" else [])
    assert NOTICE not in client.get(url).content.decode()
    Host.objects.filter(pk=host.pk).update(
        health_ok=False, health_report={"bridge": {"ok": False, "detail": "bridge xenbr0 is missing"}}
    )
    assert NOTICE in client.get(url).content.decode()
    pt = client.get(url, HTTP_ACCEPT_LANGUAGE="pt-br").content.decode()
    assert "Ponte xenbr0 ausente na última verificação de saúde" in pt
