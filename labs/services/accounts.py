"""Students' panel accounts: whose an instructor may reset or enrol, and the reset itself.

One rule for both doors to an account: a roster line naming an existing
username, and "Reset panel password…". An instructor may hand out a new
password only for a student whose every lab they teach; otherwise the new
password would also open that student's VMs in another instructor's lab.
"""

from __future__ import annotations

import secrets
import string

from django.db import transaction
from django.utils.translation import gettext as _

from labs.access import is_privileged_account, labs_for, teaches_every_lab_of
from labs.models import AuditEvent, Lab
from labs.services.errors import InvalidAction

PASSWORD_ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "lI1O0o")


def random_password(length: int = 14) -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(length))


def password_reset_refusal(actor, student) -> str | None:
    """Why `actor` may not reset this account's password, or None when they may.

    A staff or instructor account can be a student in a lab too (trying the
    lab out); resetting its password would hand that account, and whatever
    it may do beyond the lab, to the instructor: only the admin does that.
    An instructor may reset a student's password only when every lab that
    holds a VM of the student (active, or being torn down) is one they
    teach; else the password would open the student's VMs in another
    instructor's lab too. Admins may reset any student's.
    """
    if is_privileged_account(student):
        return _(
            "%(user)s is an instructor or administrator account: its password can be reset only by an"
            " administrator, in the admin."
        ) % {"user": student.username}
    if not student.has_usable_password():
        # A panel password would make it a local account, which the campus directory no longer signs in.
        return _(
            "%(user)s signs in with the campus password, which the panel does not keep: the campus directory's"
            " own password reset applies."
        ) % {"user": student.username}
    if not teaches_every_lab_of(actor, student):
        return _(
            "%(user)s also has a VM in a lab you do not teach, and a new password would open that VM to you"
            " too: only an administrator can reset this password, in the admin."
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
    with transaction.atomic():
        # The account's row, locked: a batch enrolling it elsewhere (which
        # locks it too) waits, or has finished and is seen here.
        type(student).objects.select_for_update().filter(pk=student.pk).first()
        refusal = password_reset_refusal(actor, student)
        if refusal is None:
            password = random_password()
            student.set_password(password)
            student.save(update_fields=["password"])
            _audit(actor, lab, student, AuditEvent.Result.SUCCEEDED)
    if refusal is not None:
        _audit(actor, lab, student, AuditEvent.Result.REFUSED, refusal)
        raise InvalidAction(refusal)
    return password
