-- wrk script: a chat completion offering two tools to the `bench-tools` model, which
-- answers with two tool calls; BENCH_STREAM=1 asks for a stream.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local tools = '[{"type":"function","function":{"name":"search_docs","parameters":{"type":"object","properties":{"q":{"type":"string"},"limit":{"type":"integer"}},"required":["q"]}}},' ..
  '{"type":"function","function":{"name":"send_email","parameters":{"type":"object","properties":{"to":{"type":"string"},"subject":{"type":"string"},"body":{"type":"string"}},"required":["to","body"]}}}]'
local stream = ""
if os.getenv("BENCH_STREAM") == "1" then stream = '"stream":true,' end
wrk.body = '{"model":"bench-tools",' .. stream .. '"messages":[{"role":"user","content":"Email Bob the Q3 revenue numbers."}],"tools":' .. tools .. '}'
