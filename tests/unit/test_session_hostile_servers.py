"""Hostile servers against the session logins: no TLS stripping, no secret in what the local side builds."""

from __future__ import annotations

import pytest

from vault_proxy.redaction import SecretSet
from vault_proxy.sessions.handshake import Action, UpstreamLogin
from vault_proxy.sessions.imap import ImapLogin
from vault_proxy.sessions.imap_local import ImapLocal
from vault_proxy.sessions.masking import ReplyMask
from vault_proxy.sessions.redis_replies import Markers, RespFrames
from vault_proxy.sessions.smtp import SmtpLocal, SmtpLogin

PASSWORD = "S3cretPassw0rd"
SECRETS = SecretSet([PASSWORD])
CLIENT = "0123456789abcdef0123456789abcdef"


def _drive(machine: UpstreamLogin, server: list[bytes]) -> Action:
    """Feed ``server[i]`` after the i-th wait (``server[0]`` is the greeting); TLS is taken as started."""
    action, answers = machine.start(), iter(server)
    while True:
        if action.error is not None or action.done:
            return action
        if action.tls:
            action = machine.tls_started()
            continue
        answer = next(answers, None)
        if answer is None:
            return machine.eof()
        action = machine.feed(answer)


# 1. PREAUTH must not skip STARTTLS


def test_imap_preauth_greeting_fails_a_starttls_login() -> None:
    machine = ImapLogin("u", PASSWORD, starttls=True, secrets=SECRETS)
    action = _drive(machine, [b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] welcome\r\n"])
    assert not action.done
    assert action.error is not None and "STARTTLS required, but the server greeted PREAUTH" in action.error
    assert not action.send


def test_imap_preauth_over_implicit_tls_is_a_login() -> None:
    machine = ImapLogin("u", PASSWORD, starttls=False, secrets=SECRETS)
    action = _drive(machine, [b"* PREAUTH [CAPABILITY IMAP4rev1 IDLE] welcome\r\n"])
    assert action.done and machine.capabilities == ["IMAP4rev1", "IDLE"]


# 2. upstream text the local side shows never carries the secret


def test_imap_echoed_capability_never_reaches_the_local_side() -> None:
    machine = ImapLogin("u", PASSWORD, starttls=False, secrets=SECRETS)
    action = _drive(
        machine,
        [
            b"* OK ready\r\n",
            b"* CAPABILITY IMAP4rev1\r\nv1 OK done\r\n",
            f"v2 OK [CAPABILITY IMAP4rev1 IDLE X-ECHO-{PASSWORD}] Logged in\r\n".encode(),
        ],
    )
    assert action.done
    assert all(PASSWORD not in c for c in machine.capabilities) and "IDLE" in machine.capabilities


def test_imap_echoed_post_login_capability_command_is_dropped() -> None:
    machine = ImapLogin("u", PASSWORD, starttls=False, secrets=SECRETS)
    action = _drive(
        machine,
        [
            b"* OK ready\r\n",
            b"* CAPABILITY IMAP4rev1\r\nv1 OK done\r\n",
            b"v2 OK Logged in\r\n",
            f"* CAPABILITY IMAP4rev1 X-ECHO-{PASSWORD} IDLE\r\nv3 OK done\r\n".encode(),
        ],
    )
    assert action.done and machine.capabilities == ["IMAP4rev1", "IDLE"]


@pytest.mark.parametrize("form", [PASSWORD, "S3cretPassw0rd%21x"])
def test_imap_local_greeting_capability_and_login_reply_drop_secret_capabilities(form: str) -> None:
    local = ImapLocal(["IMAP4rev1", "IDLE", f"X-ECHO-{form}"], CLIENT, SECRETS)
    step_caps = local.feed(b"a CAPABILITY\r\n")
    step_login = local.feed(f'b LOGIN "u" "{CLIENT}"\r\n'.encode())
    assert local.logged_in
    for shown in (local.greeting, step_caps.to_client, step_login.to_client):
        assert PASSWORD.encode() not in shown
        assert b"IDLE" in shown


def test_smtp_echoed_extension_is_never_relayed() -> None:
    machine = SmtpLogin("u", PASSWORD, starttls=False, secrets=SECRETS)
    action = _drive(
        machine,
        [
            b"220 hi\r\n",
            f"250-mx\r\n250-X-LEAK-{PASSWORD}\r\n250-8BITMIME\r\n250 AUTH PLAIN\r\n".encode(),
            b"235 ok\r\n",
        ],
    )
    assert action.done and machine.extensions == ["8BITMIME"]
    local = SmtpLocal([f"X-LEAK-{PASSWORD}", "8BITMIME"], CLIENT, SECRETS)
    shown = local.feed(b"EHLO me\r\n").to_client
    assert PASSWORD.encode() not in shown and b"250-8BITMIME\r\n" in shown


def test_imap_errors_from_server_text_are_masked() -> None:
    greeting = _drive(ImapLogin("u", PASSWORD, False, SECRETS), [f"* BYE {PASSWORD}\r\n".encode()])
    starttls = _drive(ImapLogin("u", PASSWORD, True, SECRETS), [b"* OK hi\r\n", f"v1 NO {PASSWORD}\r\n".encode()])
    refused = _drive(
        ImapLogin("u", PASSWORD, False, SECRETS),
        [b"* OK hi\r\n", b"v1 OK\r\n", f"v2 NO [AUTHENTICATIONFAILED] {PASSWORD}\r\n".encode()],
    )
    for action in (greeting, starttls, refused):
        assert action.error is not None and PASSWORD not in action.error and "***" in action.error


def test_smtp_auth_error_from_server_text_is_masked() -> None:
    action = _drive(
        SmtpLogin("u", PASSWORD, False, SECRETS),
        [b"220 hi\r\n", b"250-mx\r\n250 AUTH PLAIN\r\n", f"535 bad {PASSWORD}\r\n".encode()],
    )
    assert action.error is not None and PASSWORD not in action.error


# 3. Redis header lines are text to the mask


@pytest.mark.parametrize("kind", [b":", b"*", b"$", b"%", b"~", b">", b"(", b",", b"#", b"|", b"+", b"-"])
@pytest.mark.parametrize("cut", [0, 1, 3, 9, 20])
def test_redis_non_numeric_header_lines_are_masked(kind: bytes, cut: int) -> None:
    mask = ReplyMask([PASSWORD.encode()], RespFrames(Markers()))
    reply = kind + PASSWORD.encode() + b"\r\n+OK\r\n"
    out = mask.feed(reply[:cut]) + mask.feed(reply[cut:]) + mask.flush()
    assert out == kind + b"*" * len(PASSWORD) + b"\r\n+OK\r\n"


def test_redis_long_non_numeric_bulk_header_is_masked() -> None:
    secret = PASSWORD * 4  # longer than a bulk header is held
    mask = ReplyMask([secret.encode()], RespFrames(Markers()))
    reply = b"$" + secret.encode() + b"\r\n:1\r\n"
    out = mask.feed(reply) + mask.flush()
    assert out == b"$" + b"*" * len(secret) + b"\r\n:1\r\n"


def test_redis_numeric_headers_and_framing_are_unchanged() -> None:
    mask = ReplyMask([PASSWORD.encode(), b"12345"], RespFrames(Markers()))
    reply = b"*2\r\n$14\r\n" + PASSWORD.encode() + b"\r\n:12345\r\n$-1\r\n"
    out = mask.feed(reply) + mask.flush()
    assert out == b"*2\r\n$14\r\n" + b"*" * 14 + b"\r\n:12345\r\n$-1\r\n"


@pytest.mark.parametrize("cut", range(1, 24))
def test_redis_header_split_inside_a_digit_led_secret_is_masked(cut: int) -> None:
    secret = b"12" + PASSWORD.encode()
    mask = ReplyMask([secret], RespFrames(Markers()))
    reply = b"$" + secret + b"\r\n:7\r\n"
    out = mask.feed(reply[:cut]) + mask.feed(reply[cut:]) + mask.flush()
    assert out == b"$" + b"*" * len(secret) + b"\r\n:7\r\n"


@pytest.mark.parametrize("cut", range(1, 45))
def test_redis_marker_sized_bulk_split_across_reads_is_masked(cut: int) -> None:
    markers = Markers()
    mask = ReplyMask([PASSWORD.encode()], RespFrames(markers))
    payload = (b"x" * 10 + PASSWORD.encode()).ljust(markers.size, b"y")
    reply = b"$%d\r\n" % markers.size + payload + b"\r\n+OK\r\n"
    out = mask.feed(reply[:cut]) + mask.feed(reply[cut:]) + mask.flush()
    assert out == reply.replace(PASSWORD.encode(), b"*" * len(PASSWORD))


@pytest.mark.parametrize("cut", range(0, 60))
def test_redis_marker_answer_is_still_swapped_at_any_split(cut: int) -> None:
    markers = Markers()
    command = markers.command(b"+local\r\n")
    marker = command.split(b"\r\n")[-2]
    mask = ReplyMask([PASSWORD.encode()], RespFrames(markers))
    reply = b"+OK\r\n$%d\r\n" % len(marker) + marker + b"\r\n:1\r\n"
    out = mask.feed(reply[:cut]) + mask.feed(reply[cut:]) + mask.flush()
    assert out == b"+OK\r\n+local\r\n:1\r\n"
