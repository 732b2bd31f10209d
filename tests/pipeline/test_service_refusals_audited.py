"""The services record every refusal as a "refused" audit row: the state check, the memory limits (the student's
quota among them, refused inside the request's transaction), a role too low for the action, a lab action."""

from __future__ import annotations

import pytest

from labs.models import AuditEvent, Lab, StudentQuota, Task
from labs.services import InvalidAction, QuotaExceeded, guest_action, lab_action
from tests.ui.conftest import set_state

pytestmark = pytest.mark.django_db


def _refused(**kw) -> AuditEvent:
    return AuditEvent.objects.get(result=AuditEvent.Result.REFUSED, **kw)


def test_a_memory_size_over_the_quota_is_refused_and_recorded_by_the_service(alice, alice_guest):
    set_state(alice_guest, "r")
    StudentQuota.objects.create(user=alice, max_guests=2, max_memory_mb=300)
    with pytest.raises(QuotaExceeded) as info:
        guest_action(alice, alice_guest, "mem_set", memory_mb=512)
    row = _refused(action="mem_set", guest=alice_guest)
    assert row.actor == alice and row.lab == alice_guest.lab and row.message == info.value.message
    assert not Task.objects.exists()


def test_a_state_refusal_is_recorded_once(alice, alice_guest):
    set_state(alice_guest, "")
    with pytest.raises(InvalidAction):
        guest_action(alice, alice_guest, "pause")
    assert _refused(action="pause").message.startswith("Cannot pause")


def test_an_action_above_the_user_s_role_is_recorded(alice, alice_guest):
    set_state(alice_guest, "r")
    with pytest.raises(InvalidAction):
        guest_action(alice, alice_guest, "teardown")
    assert _refused(action="teardown", guest=alice_guest).message == "You may not act on this VM."


def test_a_refused_lab_action_is_recorded(ivy, lab):
    Lab.objects.filter(pk=lab.pk).update(status=Lab.Status.TORN_DOWN)
    lab.refresh_from_db()
    with pytest.raises(InvalidAction):
        lab_action(ivy, lab, "retry_failed")
    row = _refused(action="retry_failed", lab=lab)
    assert row.actor == ivy and row.target == lab.slug
