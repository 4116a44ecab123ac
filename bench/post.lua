-- wrk script: POST a chat completion; BENCH_STREAM=1 asks for a stream.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if os.getenv("BENCH_STREAM") == "1" then
  wrk.body = '{"model":"bench","stream":true,"messages":[{"role":"user","content":"hello"}]}'
else
  wrk.body = '{"model":"bench","messages":[{"role":"user","content":"hello"}]}'
end
