"""Errors the services raise; views show `.message` to the user as it is."""

from __future__ import annotations


class ServiceError(Exception):
    """A request the panel refuses, with a user-facing (translated) message.

    `field` names the form field at fault when there is one, so a view can
    attach the message to it.
    """

    # Set once a "refused" audit row says so, so the caller does not record it twice.
    audited = False

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = str(message)
        self.field = field

    def __str__(self) -> str:
        return self.message


class QuotaExceeded(ServiceError):
    """A student's limit (guests, total memory) or a lab/template limit would be exceeded."""


class InvalidAction(ServiceError):
    """The action makes no sense in the guest's current state, or the actor may not do it."""


class QueueUnavailable(ServiceError):
    """Redis could not be reached; nothing was created."""


class AccountsToConfirm(ServiceError):
    """The roster names accounts that already exist and the instructor has not confirmed this very list.

    `accounts`: those users, by username; `token`: what the form sends back
    to confirm exactly them (labs.services.batch.existing_accounts_token).
    `changed`: a confirmation was sent, for another list.
    """

    def __init__(self, message: str, accounts: list, token: str, changed: bool) -> None:
        super().__init__(message, field="roster")
        self.accounts = accounts
        self.token = token
        self.changed = changed


class PreviewChanged(ServiceError):
    """The batch is no longer what its preview showed (another batch took addresses, an account appeared...).

    `preview`: the batch as it would be now (labs.services.batch.BatchPreview); `changes`: what differs, in words.
    """

    def __init__(self, message: str, preview, changes: list[str]) -> None:
        super().__init__(message, field=None)
        self.preview = preview
        self.changes = changes
