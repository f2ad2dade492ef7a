"""The official ``openai`` and ``anthropic`` SDKs as drop-in clients of the proxy (SPEC §3, §9).

The SDK's api_key is a vault proxy token; the vault swaps it for the real key (bearer service for
OpenAI, ``x-api-key`` header service for Anthropic). The upstream accepts only the real key and
rejects any request that carries a vault token, so a passing call proves both halves.
"""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest
from helpers import unique


def sdk_http_client(env) -> httpx2.Client:
    """The SDKs' own HTTP library, with the leak-check recorder attached."""
    return httpx2.Client(timeout=30.0, event_hooks={"response": [env.server.recorder.hook]})


@pytest.fixture
def openai_service(proxy_env):
    key = proxy_env.secrets.new("sk-openai")
    proxy_env.upstream.llm_keys.add(key)
    name = proxy_env.add({"type": "bearer", "token": key}, name=unique("openai"))
    yield name, key
    proxy_env.upstream.llm_keys.discard(key)


@pytest.fixture
def anthropic_service(proxy_env):
    key = proxy_env.secrets.new("sk-ant")
    proxy_env.upstream.llm_keys.add(key)
    auth = {"type": "header", "header_name": "x-api-key", "header_value": key}
    name = proxy_env.add(auth, name=unique("anthropic"))
    yield name, key
    proxy_env.upstream.llm_keys.discard(key)


def openai_client(env, service: str, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{env.server.addr}/proxy/{service}/v1",
        api_key=token or env.token(),
        max_retries=0,
        http_client=sdk_http_client(env),
    )


def anthropic_client(env, service: str, token: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{env.server.addr}/proxy/{service}",
        api_key=token or env.token(),
        max_retries=0,
        http_client=sdk_http_client(env),
    )


def assert_injected(env, mark: int, header: str, expected: str, count: int) -> None:
    seen = env.upstream.since(mark)
    assert len(seen) == count, [r.raw_path for r in seen]
    for request in seen:
        assert request.leaked == [], f"vault token reached the upstream on {request.raw_path}"
        assert request.header_all(header) == [expected]


# --------------------------------------------------------------------------- OpenAI


def test_openai_chat_completion(proxy_env, openai_service):
    name, key = openai_service
    mark = proxy_env.upstream.mark()
    with openai_client(proxy_env, name) as client:
        completion = client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hello through the vault"}]
        )
    assert completion.choices[0].message.content == "echo: hello through the vault"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "gpt-test"
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert_injected(proxy_env, mark, "Authorization", f"Bearer {key}", 1)
    (seen,) = proxy_env.upstream.since(mark)
    assert seen.raw_path == "/v1/chat/completions" and seen.method == "POST"


def test_openai_chat_completion_stream(proxy_env, openai_service):
    name, key = openai_service
    mark = proxy_env.upstream.mark()
    with openai_client(proxy_env, name) as client:
        stream = client.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "stream these words please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces, finish, usage = [], None, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                pieces.append(choice.delta.content or "")
                finish = choice.finish_reason or finish
    assert "".join(pieces).strip() == "echo: stream these words please"
    assert finish == "stop"
    assert usage is not None and usage.completion_tokens == 5
    assert_injected(proxy_env, mark, "Authorization", f"Bearer {key}", 1)


def test_openai_models_list(proxy_env, openai_service):
    name, key = openai_service
    mark = proxy_env.upstream.mark()
    with openai_client(proxy_env, name) as client:
        ids = [model.id for model in client.models.list()]
    assert ids == ["gpt-test", "gpt-other"]
    assert_injected(proxy_env, mark, "Authorization", f"Bearer {key}", 1)


def test_openai_async_stream(proxy_env, openai_service):
    """The async client too (run in a fresh loop: the test itself is sync)."""
    import asyncio

    name, _ = openai_service
    token = proxy_env.token()

    async def run() -> str:
        async with httpx2.AsyncClient(timeout=30.0) as http:
            client = openai.AsyncOpenAI(
                base_url=f"{proxy_env.server.addr}/proxy/{name}/v1", api_key=token, max_retries=0, http_client=http
            )
            stream = await client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "async hi"}], stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(run()).strip() == "echo: async hi"


def test_openai_upstream_errors_reach_the_sdk(proxy_env):
    """A wrong real key: the upstream's own 401 comes back to the SDK as-is."""
    name = proxy_env.add({"type": "bearer", "token": proxy_env.secrets.new("sk-wrong")})
    with openai_client(proxy_env, name) as client, pytest.raises(openai.AuthenticationError) as info:
        client.models.list()
    assert info.value.status_code == 401
    assert "Incorrect API key" in str(info.value)


def test_openai_restricted_token_sees_404(proxy_env, openai_service):
    name, _ = openai_service
    other, _ = proxy_env.bearer()
    restricted = proxy_env.token([other])
    with openai_client(proxy_env, name, restricted) as client, pytest.raises(openai.NotFoundError) as info:
        client.models.list()
    assert info.value.status_code == 404


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_message(proxy_env, anthropic_service):
    name, key = anthropic_service
    mark = proxy_env.upstream.mark()
    with anthropic_client(proxy_env, name) as client:
        message = client.messages.create(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hello claude"}]
        )
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello claude"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 3
    assert_injected(proxy_env, mark, "x-api-key", key, 1)
    (seen,) = proxy_env.upstream.since(mark)
    assert seen.raw_path == "/v1/messages"
    assert seen.header("anthropic-version")


def test_anthropic_messages_stream_helper(proxy_env, anthropic_service):
    name, key = anthropic_service
    mark = proxy_env.upstream.mark()
    with (
        anthropic_client(proxy_env, name) as client,
        client.messages.stream(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "stream me please"}]
        ) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.strip() == "echo: stream me please"
    assert final.content[0].text.strip() == "echo: stream me please"
    assert final.stop_reason == "end_turn"
    assert_injected(proxy_env, mark, "x-api-key", key, 1)


def test_anthropic_raw_event_stream(proxy_env, anthropic_service):
    name, _ = anthropic_service
    with anthropic_client(proxy_env, name) as client:
        events = list(
            client.messages.create(
                model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "raw events"}], stream=True
            )
        )
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    for kind in ("content_block_start", "content_block_delta", "content_block_stop", "message_delta"):
        assert kind in kinds
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text.strip() == "echo: raw events"


def test_anthropic_token_in_authorization_header_also_works(proxy_env, anthropic_service):
    """An SDK configured with auth_token sends ``Authorization: Bearer <vault token>``: also stripped."""
    name, key = anthropic_service
    mark = proxy_env.upstream.mark()
    client = anthropic.Anthropic(
        base_url=f"{proxy_env.server.addr}/proxy/{name}",
        auth_token=proxy_env.token(),
        max_retries=0,
        http_client=sdk_http_client(proxy_env),
    )
    with client:
        message = client.messages.create(
            model="claude-test", max_tokens=16, messages=[{"role": "user", "content": "via bearer"}]
        )
    assert message.content[0].text == "echo: via bearer"
    assert_injected(proxy_env, mark, "x-api-key", key, 1)
    assert proxy_env.upstream.since(mark)[0].header("Authorization") is None


def test_anthropic_invalid_vault_token_is_vault_401(proxy_env, anthropic_service):
    name, _ = anthropic_service
    mark = proxy_env.upstream.mark()
    with anthropic_client(proxy_env, name, "f" * 64) as client, pytest.raises(anthropic.AuthenticationError) as info:
        client.messages.create(model="claude-test", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 401
    assert proxy_env.upstream.since(mark) == []
