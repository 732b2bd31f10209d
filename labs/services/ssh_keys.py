"""Students' SSH public keys: parsed as hostile input, stored one per row, written into their guests.

`parse_public_key` takes what a user pasted and either returns the key or
raises `InvalidKey` with a message that says what to do. It accepts one
OpenSSH public key line (`<type> <base64> <comment>`) of these types only:
ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa of at least 3072 bits.
The base64 blob is decoded and its wire format read (RFC 4253 6.6, RFC 5656
3.1, RFC 8709): the type inside must be the type outside, an ECDSA point
must lie on the curve its name says, an RSA modulus is counted in bits.

Nothing the user typed reaches a guest as typed: the authorized_keys line is
rebuilt from the type (one of five constants), the canonical base64 of the
decoded blob and a comment without control characters. So option prefixes
(`command="..."`), a second key on the same line and embedded line breaks
cannot ride along. A private key pasted by mistake is refused without being
stored, logged or shown again.

The keys of a student go into /root/.ssh/authorized_keys of each of their
guests when a job provisions or resets it (`authorized_keys_for`); adding or
deleting a key later does not touch a guest that already exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from labs.models import AuditEvent, IpPool, SshKey
from labs.services.errors import ServiceError

# Anything longer is not a public key (an RSA 16384-bit key is about 2.8 KB).
MAX_INPUT_BYTES = 16 * 1024
MAX_KEYS_PER_USER = 10
MAX_COMMENT_CHARS = 100
MIN_RSA_BITS = 3072
MAX_RSA_BITS = 16384  # OpenSSH's own limit

# The NIST curves of ECDSA keys: (field prime p, curve coefficient b, coordinate bytes); a = -3.
_CURVES = {
    "nistp256": (
        2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
        32,
    ),
    "nistp384": (
        2**384 - 2**128 - 2**96 + 2**32 - 1,
        0xB3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF,
        48,
    ),
    "nistp521": (
        2**521 - 1,
        int(
            "0051953EB9618E1C9A1F929A21A0B68540EEA2DA725B99B315F3B8B489918EF1"
            "09E156193951EC7E937B1652C0BD3BB1BF073573DF883D2C34F1EF451FD46B503F00",
            16,
        ),
        66,
    ),
}
ACCEPTED_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")

# What a private key looks like, in every format a user is likely to paste:
# PEM ("-----BEGIN OPENSSH PRIVATE KEY-----", RSA, EC, PKCS#8, encrypted),
# PuTTY's .ppk, the SSH2 (RFC 4716) private form, and the bare base64 body
# of an OpenSSH private key ("openssh-key-v1\0" encodes as b3BlbnNzaC1rZXktdjE).
_PRIVATE_MARKERS = re.compile(
    r"PRIVATE KEY|PuTTY-User-Key-File|Private-Lines:|BEGIN SSH2 ENCRYPTED|b3BlbnNzaC1rZXktdjE", re.IGNORECASE
)
_RFC4716 = re.compile(r"-{4} BEGIN SSH2 PUBLIC KEY -{4}", re.IGNORECASE)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# A word of a comment that is a key type, or a key blob: every blob starts with its type's length (AAAA[BCE]).
_ANOTHER_KEY = re.compile(
    r"ssh-(?:ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+@openssh\.com|\S+-cert-v01@openssh\.com"
    r"|AAAA[BCE][0-9A-Za-z+/]{16,}={0,2}"
)
_FIELD_SEPARATOR = re.compile(r"[ \t]+")


class InvalidKey(ServiceError):
    """The pasted text is not a key the panel accepts; `.message` says why."""


class PrivateKeyPasted(InvalidKey):
    """A private key: refused, and the form must not show it again."""


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    body: str  # canonical base64 of the blob
    comment: str
    bits: int
    fingerprint: str  # "SHA256:..." as ssh-keygen -l prints it

    @property
    def line(self) -> str:
        return f"{self.key_type} {self.body} {self.comment}"


# ------------------------------------------------------------------ parsing
def fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


class _Wire:
    """A reader over an SSH wire-format blob that refuses to read past its end."""

    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def string(self) -> bytes:
        if self.at + 4 > len(self.data):
            raise _malformed()
        size = int.from_bytes(self.data[self.at : self.at + 4], "big")
        start, self.at = self.at + 4, self.at + 4 + size
        if self.at > len(self.data):
            raise _malformed()
        return self.data[start : self.at]

    def mpint(self) -> int:
        """A positive mpint in its minimal encoding."""
        raw = self.string()
        if not raw or raw[0] & 0x80 or (raw[0] == 0 and (len(raw) == 1 or not raw[1] & 0x80)):
            raise _malformed()
        return int.from_bytes(raw, "big")

    def end(self) -> None:
        if self.at != len(self.data):
            raise _malformed()


def _malformed() -> InvalidKey:
    return InvalidKey(
        _(
            "The key is damaged: its data does not decode as an SSH public key. Copy the whole line of the"
            " .pub file again."
        )
    )


def _refuse_private_or_junk(text: str) -> None:
    if _PRIVATE_MARKERS.search(text):
        raise PrivateKeyPasted(
            _(
                "This is a PRIVATE key. It was not saved. Never paste your private key anywhere: paste the"
                " public key, the one line of the file that ends in .pub (for example ~/.ssh/id_ed25519.pub)."
                " If you shared this private key with anyone, make a new key pair."
            )
        )
    if len(text.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise InvalidKey(
            _("That is far too long for a public key (%(max)s KiB at most).") % {"max": MAX_INPUT_BYTES // 1024}
        )
    if _RFC4716.search(text):
        raise InvalidKey(
            _(
                "This public key is in the SSH2 (RFC 4716) format. Convert it to one OpenSSH line with"
                " ssh-keygen -i -f <file> and paste that."
            )
        )


def _single_line(text: str) -> str:
    line = text.strip()
    if not line:
        raise InvalidKey(_("Paste a public key."))
    if any(c in line for c in "\r\n\v\f\x85\u2028\u2029"):
        raise InvalidKey(_("Paste one key at a time: what you pasted has more than one line."))
    for c in line:
        if c != "\t" and unicodedata.category(c)[0] in "CZ" and c != " ":
            raise InvalidKey(
                _("The key holds an invisible or control character (%(code)s). Copy it again from the .pub file.")
                % {"code": f"U+{ord(c):04X}"}
            )
    return line


def _key_type(first: str, rest: list[str]) -> str:
    if first in ACCEPTED_TYPES:
        return first
    if first == "ssh-dss":
        raise InvalidKey(_("DSA keys are no longer safe and OpenSSH refuses them. Make an ed25519 key."))
    if first.endswith("-cert-v01@openssh.com"):
        raise InvalidKey(_("This is an SSH certificate, not a public key. Paste the public key itself."))
    if first.startswith("sk-"):
        raise InvalidKey(
            _("Keys on a hardware security key (sk-...) are not supported here. Use an ed25519, ECDSA or RSA key.")
        )
    if any(token in ACCEPTED_TYPES for token in rest) or "=" in first or "," in first:
        raise InvalidKey(
            _(
                "Options before the key (such as command=, from= or no-pty) are not allowed. Paste the key only,"
                " starting with its type (ssh-ed25519, ecdsa-sha2-... or ssh-rsa)."
            )
        )
    raise InvalidKey(
        _(
            "This is not an OpenSSH public key. A public key is one line such as"
            " 'ssh-ed25519 AAAAC3Nza... you@laptop', from a file ending in .pub."
        )
    )


def _decode(token: str) -> bytes:
    if not _BASE64.fullmatch(token):
        raise _malformed()
    try:
        blob = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed() from None
    # Only the canonical encoding: what is stored is exactly what was checked.
    if base64.b64encode(blob).decode() != token:
        raise _malformed()
    return blob


def _check_ecdsa(key_type: str, wire: _Wire) -> int:
    curve = key_type.removeprefix("ecdsa-sha2-")
    p, b, size = _CURVES[curve]
    if wire.string() != curve.encode():
        raise InvalidKey(_("The key's curve does not match its type %(type)s.") % {"type": key_type})
    point = wire.string()
    wire.end()
    if len(point) != 1 + 2 * size or point[0] != 4:
        raise _malformed()
    x, y = int.from_bytes(point[1 : 1 + size], "big"), int.from_bytes(point[1 + size :], "big")
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + b)) % p:
        raise InvalidKey(_("The key's point is not on the curve %(curve)s: it is not a valid key.") % {"curve": curve})
    return size * 8 if curve != "nistp521" else 521


def _check_rsa(wire: _Wire) -> int:
    e, n = wire.mpint(), wire.mpint()
    wire.end()
    bits = n.bit_length()
    if e < 3 or not e & 1 or not n & 1:
        raise _malformed()
    if bits < MIN_RSA_BITS:
        raise InvalidKey(
            _("This RSA key has %(bits)s bits; at least %(min)s are needed. Make an ed25519 key instead.")
            % {"bits": bits, "min": MIN_RSA_BITS}
        )
    if bits > MAX_RSA_BITS:
        raise InvalidKey(
            _("This RSA key has %(bits)s bits; OpenSSH takes at most %(max)s.") % {"bits": bits, "max": MAX_RSA_BITS}
        )
    return bits


def _check_blob(key_type: str, blob: bytes) -> int:
    """The key's size in bits, once its wire format is what `key_type` says."""
    wire = _Wire(blob)
    if wire.string() != key_type.encode():
        raise InvalidKey(_("The key's data says it is another type of key than %(type)s.") % {"type": key_type})
    if key_type == "ssh-ed25519":
        if len(wire.string()) != 32:
            raise _malformed()
        wire.end()
        return 256
    if key_type == "ssh-rsa":
        return _check_rsa(wire)
    return _check_ecdsa(key_type, wire)


def _comment(words: list[str]) -> str:
    comment = " ".join(words)
    if not comment:
        raise InvalidKey(
            _(
                "The key has no comment. Add one after the key, separated by a space, that says whose key it"
                " is and where it lives (for example alice@laptop)."
            )
        )
    if any(_ANOTHER_KEY.fullmatch(word) for word in words):
        raise InvalidKey(_("Paste one key at a time: this line holds more than one key."))
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidKey(_("The comment is too long (%(max)s characters at most).") % {"max": MAX_COMMENT_CHARS})
    return comment


def parse_public_key(text: str) -> PublicKey:
    """The key in `text`, checked; InvalidKey (PrivateKeyPasted for a private key) otherwise."""
    _refuse_private_or_junk(text)
    fields = _FIELD_SEPARATOR.split(_single_line(text))
    key_type = _key_type(fields[0], fields[1:])
    if len(fields) < 2:
        raise _malformed()
    blob = _decode(fields[1])
    bits = _check_blob(key_type, blob)
    comment = _comment(fields[2:])
    return PublicKey(key_type, fields[1], comment, bits, fingerprint(blob))


# ------------------------------------------------------------------ a user's keys
def _audit(user: User, action: str, key: SshKey) -> None:
    AuditEvent.objects.create(
        actor=user,
        action=action,
        target=user.username,
        result=AuditEvent.Result.SUCCEEDED,
        message=f"{key.key_type} {key.fingerprint} {key.comment}",
    )


def add_key(user: User, text: str) -> SshKey:
    """Store the key pasted in `text` for `user`; InvalidKey when refused."""
    key = parse_public_key(text)
    with transaction.atomic():
        # One add at a time per user, so two at once cannot pass the limit together.
        User.objects.select_for_update().filter(pk=user.pk).first()
        existing = SshKey.objects.filter(user=user)
        if existing.filter(fingerprint=key.fingerprint).exists():
            raise InvalidKey(_("You already added this key (%(fp)s).") % {"fp": key.fingerprint})
        if existing.count() >= MAX_KEYS_PER_USER:
            raise InvalidKey(
                _("You have %(max)s keys, the most allowed. Delete one you no longer use first.")
                % {"max": MAX_KEYS_PER_USER}
            )
        try:
            with transaction.atomic():
                row = SshKey.objects.create(
                    user=user,
                    key_type=key.key_type,
                    body=key.body,
                    comment=key.comment,
                    bits=key.bits,
                    fingerprint=key.fingerprint,
                )
        except IntegrityError:
            raise InvalidKey(_("You already added this key (%(fp)s).") % {"fp": key.fingerprint}) from None
        _audit(user, "ssh_key_add", row)
    return row


def delete_key(user: User, key: SshKey) -> None:
    """Delete one of `user`'s keys; guests that already have it keep it until they are reset."""
    if key.user_id != user.pk:
        raise InvalidKey(_("This is not your key."))
    with transaction.atomic():
        _audit(user, "ssh_key_delete", key)
        key.delete()


def authorized_keys_for(user_id: int) -> str:
    """The user's keys as /root/.ssh/authorized_keys text ("" when none), oldest first."""
    keys = SshKey.objects.filter(user_id=user_id).order_by("created_at", "pk")
    return "".join(k.authorized_keys_line + "\n" for k in keys)


def ssh_command(pool: IpPool, ip: str) -> str:
    """The command that reaches a guest of `pool` at `ip` over SSH; "" when the pool says it cannot be reached."""
    if pool.jump_host:
        return f"ssh -J {pool.jump_host} root@{ip}"
    if pool.reachable_from_campus:
        return f"ssh root@{ip}"
    return ""
