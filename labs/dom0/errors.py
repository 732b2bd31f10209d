"""Errors raised by the dom0 layer.

Every failure carries what the panel needs to show and to clean up: the
command (an argv list), its exit code and stderr, and the resources the
failing operation had already created.
"""

from __future__ import annotations

from collections.abc import Sequence


class Dom0Error(Exception):
    """Base class: a host operation failed."""

    def __init__(
        self,
        message: str,
        *,
        argv: Sequence[str] | None = None,
        rc: int | None = None,
        stderr: str = "",
        created: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.argv = list(argv) if argv else []
        self.rc = rc
        self.stderr = stderr
        # Resources (LV paths, config files, domain names) this operation
        # created before it failed, so the caller can remove them.
        self.created = list(created)

    def __str__(self) -> str:
        return self.message

    def detail(self) -> str:
        """A multi-line text for job logs: message, command, rc and stderr."""
        lines = [self.message]
        if self.argv:
            lines.append("command: " + " ".join(self.argv))
        if self.rc is not None:
            lines.append(f"exit code: {self.rc}")
        if self.stderr.strip():
            lines.append("stderr: " + self.stderr.strip())
        if self.created:
            lines.append("created before failing: " + ", ".join(self.created))
        return "\n".join(lines)


class InvalidName(Dom0Error, ValueError):
    """A name or path was refused before any command was built."""


class CommandFailed(Dom0Error):
    """A command exited non-zero and no more specific error applies."""


class CommandTimeout(Dom0Error):
    """A command ran longer than its timeout and was killed."""


# --- LVM --------------------------------------------------------------------
class LvmError(Dom0Error):
    pass


class VolumeExists(LvmError):
    pass


class InsufficientSpace(LvmError):
    pass


class VolumeGroupNotFound(LvmError):
    pass


class VolumeNotFound(LvmError):
    pass


# --- root filesystem --------------------------------------------------------
class RootfsError(Dom0Error):
    pass


# --- toolstack --------------------------------------------------------------
class ToolstackError(Dom0Error):
    pass


class DomainNotFound(ToolstackError):
    pass


class DomainExists(ToolstackError):
    pass


class NotEnoughMemory(ToolstackError):
    pass


class InvalidState(ToolstackError):
    """The domain is not in a state where the verb makes sense."""
