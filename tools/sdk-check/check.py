"""Drive Palisade with the official OpenAI Python SDK, as a user would.

    python check.py BASE_URL MODEL [API_KEY]

Exits non-zero with a message on the first mismatch. Used by the Rust
integration test `sdk_compat` (which starts the gateway and upstream).
"""
import sys

import openai

base_url, model = sys.argv[1], sys.argv[2]
key = sys.argv[3] if len(sys.argv) > 3 else "unused-in-open-mode"
client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=10)

reply = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "sdk says hello"}]
)
assert reply.choices[0].message.content == "sdk says hello", reply
assert reply.usage.total_tokens > 0, reply.usage

pieces, usage = [], None
stream = client.chat.completions.create(
    model=model,
    stream=True,
    stream_options={"include_usage": True},
    messages=[{"role": "user", "content": "streamed through palisade"}],
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
assert "".join(pieces) == "streamed through palisade", pieces
assert usage is not None and usage.completion_tokens == 3, usage

ids = [m.id for m in client.models.list()]
assert ids, ids

emb = client.embeddings.create(model=model, input="vector")
assert len(emb.data[0].embedding) == 3, emb

if len(sys.argv) == 3:
    # Open mode routes any model: the scripted agent model emits a tool call,
    # streamed, through the built-in policy's tool gate. The SDK's stream
    # helper must rebuild the assistant message (its role went with a chunk
    # the gate dropped), and the gate's report chunk (capability tokens) must
    # arrive even though no usage chunk was asked for.
    tools = [{"type": "function", "function": {"name": "search_docs",
              "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]
    script = 'CALLS [{"name": "search_docs", "arguments": {"q": "refunds"}}]'
    reports = []
    with client.chat.completions.stream(
        model="tool-calls", tools=tools, messages=[{"role": "user", "content": script}]
    ) as s:
        for event in s:
            extra = getattr(getattr(event, "chunk", None), "model_extra", None) or {}
            if "palisade" in extra:
                reports.append(extra["palisade"])
        final = s.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant", message
    assert message.tool_calls and message.tool_calls[0].function.name == "search_docs", message
    assert reports and reports[0]["tool_calls"][0]["status"] == "released", reports
    assert reports[0]["tool_calls"][0]["capability"].startswith("pcap1."), reports

    # The Responses API streamed, with parallel function calls through the
    # tool gate: the SDK's accumulator indexes items by `output_index` and
    # its helpers read `sequence_number`, so the gateway's rewritten stream
    # must be one it can replay: one call released, one withheld.
    rtools = [{"type": "function", "name": "search_docs", "strict": False,
               "parameters": {"type": "object", "required": ["q"],
                              "properties": {"q": {"type": "string"}},
                              "additionalProperties": False}}]
    rscript = ('CALLS [{"name": "search_docs", "arguments": {"q": "refunds"}}, '
               '{"name": "search_docs", "arguments": {"query": 3}}, '
               '{"name": "search_docs", "arguments": {"q": "returns"}}]')
    with client.responses.stream(model=model, input=rscript, tools=rtools) as s:
        seen = [event.type for event in s]
        final = s.get_final_response()
    calls = [o for o in final.output if o.type == "function_call"]
    assert [(c.call_id, c.arguments) for c in calls] == [
        ("call_0", '{"q":"refunds"}'), ("call_2", '{"q":"returns"}')], final.output
    assert seen[-1] == "response.completed", seen
    report = (final.model_extra or {}).get("palisade") or {}
    raw = list(client.responses.create(model=model, input=rscript, tools=rtools, stream=True))
    assert [e.sequence_number for e in raw] == list(range(len(raw))), [e.type for e in raw]
    last = raw[-1]
    assert last.type == "response.completed", last
    statuses = [r["status"] for r in (last.model_extra or {})["palisade"]["tool_calls"]]
    assert statuses == ["released", "withheld", "released"], statuses
    assert [o.call_id for o in last.response.output] == ["call_0", "call_2"], last.response.output

    # Plain text streamed and rebuilt by the SDK.
    with client.responses.stream(model=model, input="responses through palisade") as s:
        for _ in s:
            pass
        text = s.get_final_response().output_text
    assert text == "responses through palisade", text

if len(sys.argv) > 3:
    # The keyed configuration routes named models only.
    try:
        client.chat.completions.create(model="does-not-exist", messages=[{"role": "user", "content": "x"}])
        raise SystemExit("expected NotFoundError")
    except openai.NotFoundError as e:
        assert e.status_code == 404 and e.code == "model_not_found", (e.status_code, e.code)

    bad = openai.OpenAI(base_url=base_url, api_key="pk-wrong", max_retries=0, timeout=10)
    try:
        bad.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        raise SystemExit("expected AuthenticationError")
    except openai.AuthenticationError as e:
        assert e.code == "invalid_api_key", e.code

print("ok")
