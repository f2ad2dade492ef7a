"""The Postgres login against hostile servers: scripted server bytes drive the sans-I/O machines.

Found by the red-team review: unbounded ParameterStatus, unlimited SCRAM rounds, a 5000-digit iteration
count escaping as ValueError, the server's ``e=`` text (and other server words) quoting the stored
password, and the replayed ParameterStatus / BackendKeyData skipping the mask.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from vault_proxy.redaction import SecretSet
from vault_proxy.sessions.handshake import Action
from vault_proxy.sessions.postgres_local import PostgresLocal
from vault_proxy.sessions.postgres_login import PostgresLogin, UpstreamState
from vault_proxy.sessions.scram import ScramClient, ScramError

PASSWORD = "s3cr3t-Pa55word"
SASL = b"SCRAM-SHA-256\x00\x00"


def _pg(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(payload) + 4) + payload


def _auth(code: int, data: bytes = b"") -> bytes:
    return _pg(b"R", struct.pack("!I", code) + data)


def _status(*pairs: tuple[str, str]) -> bytes:
    return _pg(b"S", b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs))


READY = _pg(b"K", b"12345678") + _pg(b"Z", b"I")


class Server:
    """A scripted SCRAM server for ``PASSWORD``; records how many PBKDF2 proofs the vault started."""

    def __init__(self, iterations: str = "16") -> None:
        self.salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), b"salt", 16)
        self.iterations = iterations
        self.server_first = ""
        self.client_first_bare = ""

    def first(self, sent: bytes) -> bytes:
        self.client_first_bare = sent[sent.index(b"n,,") + 3 :].decode()
        nonce = self.client_first_bare.split("r=", 1)[1] + "SERVER"
        self.server_first = f"r={nonce},s={base64.b64encode(b'salt').decode()},i={self.iterations}"
        return _auth(11, self.server_first.encode())

    def signature(self, sent: bytes) -> bytes:
        without_proof = sent[5:].decode().rsplit(",p=", 1)[0]
        message = f"{self.client_first_bare},{self.server_first},{without_proof}".encode()
        server_key = hmac.new(self.salted, b"Server Key", hashlib.sha256).digest()
        return b"v=" + base64.b64encode(hmac.new(server_key, message, hashlib.sha256).digest())


def _drive(machine: PostgresLogin, server: list, secrets: SecretSet | None = None) -> tuple[list[bytes], Action, int]:
    """Like test_session_handshakes._drive, whole answers; also counts the ``work`` (PBKDF2) calls."""
    sent: list[bytes] = []
    works = 0
    action = machine.start()
    answers = iter(server)
    while True:
        if action.send:
            sent.append(action.send)
        if action.error is not None or action.done:
            return sent, action, works
        if action.work is not None:
            works += 1
            action = action.work()
            continue
        answer = next(answers, None)
        if answer is None:
            return sent, machine.eof(), works
        if callable(answer):
            answer = answer(sent[-1] if sent else b"")
        action = machine.feed(answer)


def _login(server: list) -> tuple[PostgresLogin, Action, int]:
    machine = PostgresLogin("app", PASSWORD, "appdb", "prefer", secrets=SecretSet([PASSWORD]))
    _, action, works = _drive(machine, [b"N", *server])
    return machine, action, works


def _messages(data: bytes) -> list[tuple[bytes, bytes]]:
    """Split backend messages, checking every length."""
    out = []
    while data:
        (length,) = struct.unpack("!I", data[1:5])
        assert len(data) >= 1 + length
        out.append((data[:1], data[5 : 1 + length]))
        data = data[1 + length :]
    return out


# 1. ParameterStatus is capped ----------------------------------------------------------------------------


def test_many_parameter_messages_fail_the_login() -> None:
    flood = b"".join(_status((f"p{i}", "x" * 10)) for i in range(1000))
    machine, action, _ = _login([_auth(0) + flood + READY])
    assert action.error == "postgres login failed: too many server parameters"
    assert len(machine.state.parameters) <= 64


def test_huge_parameter_messages_with_many_pairs_fail_the_login() -> None:
    big = _status(*((f"name{i}", "v" * 100) for i in range(5000)))
    _, action, _ = _login([_auth(0) + big + READY])
    assert action.error == "postgres login failed: too many server parameters"
    _, action, _ = _login([_auth(0) + _status(("server_version", "9" * 20_000)) + READY])
    assert action.error == "postgres login failed: too many server parameters"


def test_the_same_parameter_repeated_forever_fails_the_login() -> None:
    flood = _status(("server_version", "16.1")) * 10_000
    _, action, _ = _login([_auth(0) + flood + READY])
    assert action.error == "postgres login failed: too many server parameters"


def test_an_ordinary_parameter_set_still_logs_in() -> None:
    normal = b"".join(_status((f"param_{i}", "value" * 4)) for i in range(20))
    machine, action, _ = _login([_auth(0) + normal + READY])
    assert action.done and action.error is None and len(machine.state.parameters) == 20


def test_the_set_config_answer_is_capped_too() -> None:
    local = PostgresLocal(UpstreamState(parameters={"server_version": "16.1"}, backend_key=b"12345678"))
    step = local.feed(_startup({"user": "u", "application_name": "psql"}))
    assert local.wants_upstream and step.close is None
    flood = b"".join(_status((f"p{i}", "x")) for i in range(1000))
    step = local.feed_upstream(_pg(b"T", b"") + flood + _pg(b"C", b"SELECT 1\0") + _pg(b"Z", b"I"))
    assert step.close is not None and not local.logged_in
    assert b"too many server parameters" in step.to_client


# 2. SCRAM has exactly one continue and one final ---------------------------------------------------------


def test_a_second_sasl_continue_is_refused_without_a_second_proof() -> None:
    server = Server()
    _, action, works = _login([_auth(10, SASL), server.first, lambda sent: _auth(11, server.server_first.encode())])
    assert action.error == "postgres auth failed: authentication request 11 out of order"
    assert works == 1


def test_many_sasl_continues_in_one_read_start_one_proof() -> None:
    server = Server()
    _, action, works = _login([_auth(10, SASL), lambda sent: server.first(sent) * 50])
    assert action.error == "postgres auth failed: authentication request 11 out of order"
    assert works == 1


def test_out_of_order_auth_messages_are_refused() -> None:
    server = Server()
    _, action, works = _login([_auth(10, SASL), _auth(12, b"v=AAAA")])
    assert action.error == "postgres auth failed: authentication request 12 out of order" and works == 0
    _, action, works = _login([_auth(11, b"r=x,s=c2FsdA==,i=16")])
    assert action.error == "postgres auth failed: authentication request 11 out of order" and works == 0
    _, action, _ = _login([_auth(10, SASL), _auth(10, SASL)])
    assert action.error == "postgres auth failed: authentication request 10 out of order"
    _, action, _ = _login([_auth(10, SASL), server.first, lambda sent: _auth(12, server.signature(sent)) * 2])
    assert action.error == "postgres auth failed: authentication request 12 out of order"


def test_the_scram_login_still_works() -> None:
    server = Server()
    _, action, works = _login([_auth(10, SASL), server.first, lambda sent: _auth(12, server.signature(sent))
                               + _auth(0) + READY])  # fmt: skip
    assert action.done and action.error is None and works == 1


# 3. SCRAM parsing errors are ScramErrors -----------------------------------------------------------------


def test_a_5000_digit_iteration_count_is_a_named_error() -> None:
    _, action, works = _login([_auth(10, SASL), Server("9" * 5000).first])
    assert action.error == "postgres auth failed: bad iteration count" and works == 1
    _, action, _ = _login([_auth(10, SASL), Server("1" + "0" * 11).first])
    assert action.error == "postgres auth failed: bad iteration count"
    _, action, _ = _login([_auth(10, SASL), Server("١٦").first])  # Arabic-Indic digits
    assert action.error is not None and action.error.startswith("postgres auth failed: ")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"r=NONCE", b"i=", b"s=", b"r=NONCEx,s=", b"e="]))
def test_scram_parsing_raises_only_scram_error(garbage: bytes, prefix: bytes) -> None:
    client = ScramClient(PASSWORD)
    nonce = client.first_message().split(b"r=", 1)[1]
    data = prefix.replace(b"NONCE", nonce) + garbage
    for call in (client.final_message, client.verify_server):
        try:
            call(data)
        except ScramError as exc:
            assert PASSWORD not in str(exc)


# 4. Server words never quote the stored password ---------------------------------------------------------


def test_server_final_error_text_is_not_quoted() -> None:
    server = Server()
    for text, expected in ((PASSWORD, "server error"), ("invalid-proof", "server error invalid-proof"),
                           ("x" * 41, "server error"), ("the password is " + PASSWORD, "server error")):  # fmt: skip
        _, action, _ = _login([_auth(10, SASL), server.first, _auth(12, b"e=" + text.encode())])
        assert action.error == f"postgres auth failed: {expected}"


def test_a_password_shaped_like_an_error_code_is_masked() -> None:
    machine = PostgresLogin("app", "hunter-two", "appdb", "disable", secrets=SecretSet(["hunter-two"]))
    server = Server()
    _, action, _ = _drive(machine, [_auth(10, SASL), server.first, _auth(12, b"e=hunter-two")])
    assert action.error is not None and "hunter-two" not in action.error


def test_error_responses_are_masked() -> None:
    for step, before in (("auth", b""), ("login", _auth(0))):
        error = _pg(b"E", b"SFATAL\0C" + PASSWORD.encode() + b"\0Mbad password " + PASSWORD.encode() + b"\0\0")
        _, action, _ = _login([before + error])
        assert action.error is not None and action.error.startswith(f"postgres {step} failed")
        assert PASSWORD not in action.error


def test_the_set_config_error_is_masked_before_the_client_sees_it() -> None:
    local = PostgresLocal(UpstreamState(backend_key=b"12345678", secrets=SecretSet([PASSWORD])))
    local.feed(_startup({"user": "u", "application_name": "psql"}))
    error = _pg(b"E", b"SERROR\0C" + PASSWORD[:5].encode() + b"\0Mno " + PASSWORD.encode() + b" here\0\0")
    step = local.feed_upstream(error + _pg(b"Z", b"I"))
    assert step.close is not None and PASSWORD.encode() not in step.to_client
    assert PASSWORD[:5] not in step.close
    kinds = _messages(step.to_client)
    assert kinds[0][0] == b"E" and b"C" + b"XX000" in kinds[0][1]


# 5. The replayed state is masked -------------------------------------------------------------------------


def _startup(params: dict[str, str]) -> bytes:
    body = struct.pack("!I", 196608) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
    return struct.pack("!I", len(body) + 5) + body + b"\0"


def test_replayed_parameters_are_masked_with_right_lengths() -> None:
    hostile = _status(("server_version", PASSWORD)) + _status((PASSWORD, "1")) + _status(("TimeZone", "UTC"))
    machine, action, _ = _login([_auth(0) + hostile + READY])
    assert action.done and action.error is None
    local = PostgresLocal(machine.state)
    step = local.feed(_startup({"user": "u"}))
    assert local.logged_in and PASSWORD.encode() not in step.to_client
    messages = _messages(step.to_client)
    statuses = [payload for kind, payload in messages if kind == b"S"]
    assert b"server_version\0***\0" in statuses and b"TimeZone\0UTC\0" in statuses
    assert (b"K", b"12345678") in messages and messages[-1] == (b"Z", b"I")


def test_replayed_set_config_parameters_are_masked() -> None:
    local = PostgresLocal(UpstreamState(backend_key=b"12345678", secrets=SecretSet([PASSWORD])))
    local.feed(_startup({"user": "u", "application_name": "psql"}))
    step = local.feed_upstream(_status(("application_name", PASSWORD)) + _pg(b"Z", b"I"))
    assert local.logged_in and PASSWORD.encode() not in step.to_client
    assert (b"S", b"application_name\0***\0") in _messages(step.to_client)


def test_a_backend_key_holding_a_secret_is_not_replayed() -> None:
    local = PostgresLocal(UpstreamState(backend_key=b"pw123456", secrets=SecretSet(["pw123456"])))
    step = local.feed(_startup({"user": "u"}))
    assert local.logged_in and b"pw123456" not in step.to_client
    _, action, _ = _login([_auth(0) + _pg(b"K", PASSWORD.encode()) + _pg(b"Z", b"I")])
    assert action.error == "postgres login failed: malformed BackendKeyData"
