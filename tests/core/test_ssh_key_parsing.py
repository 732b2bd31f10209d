"""SSH public keys are parsed as hostile input: real keys made by ssh-keygen pass, everything else is refused clearly.

What is stored (and later written into a guest's authorized_keys) is rebuilt
from the parsed parts, never the pasted text.
"""

from __future__ import annotations

import base64
import subprocess

import pytest

from labs.services.ssh_keys import (
    MAX_INPUT_BYTES,
    InvalidKey,
    PrivateKeyPasted,
    parse_public_key,
)


def _keygen(directory, kind: str, *args: str):
    path = directory / f"id_{kind}"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind.split("-")[0], *args, "-N", "", "-C", f"alice@{kind}", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict:
    """Real key pairs: {name: private key path} (the public key is <path>.pub)."""
    d = tmp_path_factory.mktemp("keys")
    return {
        "ed25519": _keygen(d, "ed25519"),
        "ecdsa-256": _keygen(d, "ecdsa-256", "-b", "256"),
        "ecdsa-384": _keygen(d, "ecdsa-384", "-b", "384"),
        "ecdsa-521": _keygen(d, "ecdsa-521", "-b", "521"),
        "rsa-2048": _keygen(d, "rsa-2048", "-b", "2048"),
        "rsa-3072": _keygen(d, "rsa-3072", "-b", "3072"),
    }


def pub(keys: dict, name: str) -> str:
    return (keys[name].parent / f"{keys[name].name}.pub").read_text()


def refused(text: str, kind: type[InvalidKey] = InvalidKey) -> str:
    with pytest.raises(kind) as e:
        parse_public_key(text)
    return e.value.message


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _line(key_type: str, blob: bytes, comment: str = "c") -> str:
    return f"{key_type} {base64.b64encode(blob).decode()} {comment}"


def _blob(text: str) -> bytes:
    return base64.b64decode(text.split()[1])


# ------------------------------------------------------------------ real keys
@pytest.mark.parametrize(
    ("name", "key_type", "bits"),
    [
        ("ed25519", "ssh-ed25519", 256),
        ("ecdsa-256", "ecdsa-sha2-nistp256", 256),
        ("ecdsa-384", "ecdsa-sha2-nistp384", 384),
        ("ecdsa-521", "ecdsa-sha2-nistp521", 521),
        ("rsa-3072", "ssh-rsa", 3072),
    ],
)
def test_real_keys_are_accepted_with_ssh_keygens_fingerprint(keys, name, key_type, bits):
    text = pub(keys, name)
    key = parse_public_key(text)
    assert (key.key_type, key.bits, key.comment) == (key_type, bits, f"alice@{name}")
    listed = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=text, capture_output=True, text=True, check=True)
    assert key.fingerprint == listed.stdout.split()[1]
    assert key.line == text.strip()


def test_rsa_below_3072_bits_is_refused(keys):
    assert "2048 bits; at least 3072" in refused(pub(keys, "rsa-2048"))


@pytest.mark.parametrize("name", ["ed25519", "ecdsa-256", "rsa-3072"])
def test_a_private_key_is_refused_and_never_repeated(keys, name):
    private = keys[name].read_text()
    message = refused(private, PrivateKeyPasted)
    assert "PRIVATE key" in message and "not saved" in message
    body = private.splitlines()[1]
    assert body not in message
    # Its bare base64 body, or the key with its public half, is still a private key.
    refused(body, PrivateKeyPasted)
    refused(pub(keys, name) + private, PrivateKeyPasted)


def test_pem_and_putty_private_keys_are_refused(tmp_path):
    pem = _keygen(tmp_path, "rsa", "-b", "3072", "-m", "PEM").read_text()
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    refused(pem, PrivateKeyPasted)
    putty = "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPublic-Lines: 1\nAAAA\nPrivate-Lines: 1\nAAAA\n"
    refused(putty, PrivateKeyPasted)


# ------------------------------------------------------------------ what a line may hold
def test_a_comment_is_required(keys):
    bare = " ".join(pub(keys, "ed25519").split()[:2])
    assert "no comment" in refused(bare)


def test_separators_and_spaces_are_normalised(keys):
    key_type, body, _comment = pub(keys, "ed25519").split()
    key = parse_public_key(f"  {key_type}\t{body}   my  laptop \r\n")
    assert key.line == f"{key_type} {body} my laptop"


@pytest.mark.parametrize(
    "prefix",
    ['command="rm -rf /"', "no-pty", 'restrict,command="/bin/sh"', 'from="*" ', 'environment="LD_PRELOAD=x"'],
)
def test_options_before_the_key_are_refused(keys, prefix):
    assert "Options before the key" in refused(f"{prefix} {pub(keys, 'ed25519')}")


def test_two_keys_on_one_line_or_two_lines_are_refused(keys):
    one, other = pub(keys, "ed25519").strip(), pub(keys, "ecdsa-256").strip()
    assert "more than one key" in refused(f"{one} {other}")
    key_type, body, _ = other.split()
    assert "more than one key" in refused(f"{one} {body}")
    assert "more than one line" in refused(f"{one}\n{other}\n")
    assert "more than one line" in refused(f"{one}\r{other}")


@pytest.mark.parametrize(
    "char", ["\x00", "\x1b[31m", "\x7f", "\u202e", "\u200b", "\u00a0", "\u2028", "\x0b", "\ufeff"]
)
def test_control_and_invisible_characters_are_refused(keys, char):
    key_type, body, comment = pub(keys, "ed25519").split()
    message = refused(f"{key_type} {body} {comment}{char}x")
    assert "invisible or control character" in message or "more than one line" in message


def test_overlong_input_is_refused_without_parsing(keys):
    text = pub(keys, "ed25519").strip() + " " + "a" * MAX_INPUT_BYTES
    assert "far too long" in refused(text)
    key_type, body, _ = pub(keys, "ed25519").split()
    assert "comment is too long" in refused(f"{key_type} {body} {'x' * 101}")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "Paste a public key"),
        ("   \n  ", "Paste a public key"),
        ("hello world", "not an OpenSSH public key"),
        ("ssh-ed25519", "damaged"),
        ("ssh-ed25519 not*base64 c", "damaged"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP c", "DSA keys"),
        ("sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t c", "hardware security key"),
        ("ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQ= c", "certificate"),
        ("---- BEGIN SSH2 PUBLIC KEY ----\nAAAAC3Nza\n---- END SSH2 PUBLIC KEY ----", "RFC 4716"),
    ],
)
def test_junk_is_refused_with_a_clear_message(text, words):
    assert words in refused(text)


# ------------------------------------------------------------------ the blob itself
def test_the_blob_must_be_the_type_the_line_says(keys):
    blob = _blob(pub(keys, "ed25519"))
    assert "another type of key than ssh-rsa" in refused(_line("ssh-rsa", blob))
    assert "another type" in refused(_line("ecdsa-sha2-nistp256", _blob(pub(keys, "ecdsa-384"))))


def test_truncated_padded_or_non_canonical_blobs_are_refused(keys):
    blob = _blob(pub(keys, "ed25519"))
    assert "damaged" in refused(_line("ssh-ed25519", blob[:-1]))
    assert "damaged" in refused(_line("ssh-ed25519", blob + b"\0"))
    assert "damaged" in refused(_line("ssh-ed25519", _string(b"ssh-ed25519") + _string(b"\1" * 31)))
    assert "damaged" in refused(_line("ssh-ed25519", (2**32 - 1).to_bytes(4, "big") + b"ssh-ed25519"))
    # 104 bytes of ECDSA P-256 end in one "=": the character before it carries two unused bits.
    blob = _blob(pub(keys, "ecdsa-256"))
    text = base64.b64encode(blob).decode()
    assert text.endswith("=") and not text.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    tampered = text[:-2] + alphabet[alphabet.index(text[-2]) ^ 1] + "="
    assert base64.b64decode(tampered) == blob  # the same bytes, spelled another way
    assert "damaged" in refused(f"ecdsa-sha2-nistp256 {tampered} c")


def test_an_ecdsa_key_names_its_own_curve_and_lies_on_it(keys):
    blob = _blob(pub(keys, "ecdsa-256"))
    point = blob[-65:]
    wrong_curve = _string(b"ecdsa-sha2-nistp256") + _string(b"nistp384") + _string(point)
    assert "curve does not match" in refused(_line("ecdsa-sha2-nistp256", wrong_curve))
    off = point[:-1] + bytes([point[-1] ^ 1])
    off_curve = _string(b"ecdsa-sha2-nistp256") + _string(b"nistp256") + _string(off)
    assert "not on the curve nistp256" in refused(_line("ecdsa-sha2-nistp256", off_curve))
    compressed = _string(b"ecdsa-sha2-nistp256") + _string(b"nistp256") + _string(b"\2" + point[1:33])
    assert "damaged" in refused(_line("ecdsa-sha2-nistp256", compressed))


def test_rsa_integers_are_positive_minimal_and_sized(keys):
    blob = _blob(pub(keys, "rsa-3072"))
    head = _string(b"ssh-rsa")
    e_n = blob[len(head) :]
    e_len = int.from_bytes(e_n[:4], "big")
    e, n = e_n[4 : 4 + e_len], e_n[4 + e_len + 4 :]

    def rsa(e: bytes, n: bytes) -> str:
        return _line("ssh-rsa", head + _string(e) + _string(n))

    assert parse_public_key(rsa(e, n)).bits == 3072
    assert "damaged" in refused(rsa(b"\0" + e, n))  # a needless leading zero
    assert "damaged" in refused(rsa(e, n[1:]))  # the sign bit set: a negative modulus
    assert "damaged" in refused(rsa(b"\2", n))  # an even exponent
    assert "at most 16384" in refused(rsa(e, b"\0" + b"\xff" * 2049))
