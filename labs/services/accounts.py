"""Students' panel accounts: an instructor gives a student who forgot it a new password."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from labs.access import INSTRUCTORS_GROUP, labs_for
from labs.models import AuditEvent, Lab
from labs.services.batch import random_password
from labs.services.errors import InvalidAction


def password_reset_refusal(student) -> str | None:
    """Why an instructor may not reset this account's password, or None when they may.

    A staff or instructor account can be a student in a lab too (trying the
    lab out); resetting its password would hand that account, and whatever
    it may do beyond the lab, to the instructor. The group is read directly,
    not through is_instructor(), so a disabled instructor account is refused too.
    """
    if student.is_staff or student.is_superuser or student.groups.filter(name=INSTRUCTORS_GROUP).exists():
        return _(
            "%(user)s is an instructor or administrator account: its password can be reset only by an"
            " administrator, in the admin."
        ) % {"user": student.username}
    return None


def _audit(actor, lab: Lab, student, result: str, message: str = "") -> None:
    AuditEvent.objects.create(
        actor=actor, action="reset_password", lab=lab, target=student.username, result=result, message=message
    )


def reset_student_password(actor, lab: Lab, student) -> str:
    """Give a student of `lab` a new random panel password and return it, to be shown once.

    Only its hash is stored; the view keeps the plain text in the
    instructor's session until its one showing. Changing it changes the
    session auth hash, so every session the student had is signed out.
    """
    if not labs_for(actor).filter(pk=lab.pk).exists():
        raise InvalidAction(_("You may not manage this lab."))
    if not lab.guests.filter(student=student).exists():
        raise InvalidAction(_("%(user)s has no VM in the lab %(lab)s.") % {"user": student.username, "lab": lab.name})
    refusal = password_reset_refusal(student)
    if refusal is not None:
        _audit(actor, lab, student, AuditEvent.Result.REFUSED, refusal)
        raise InvalidAction(refusal)
    password = random_password()
    with transaction.atomic():
        student.set_password(password)
        student.save(update_fields=["password"])
        _audit(actor, lab, student, AuditEvent.Result.SUCCEEDED)
    return password
