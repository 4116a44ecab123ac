wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local turns = {}
table.insert(turns, '{"role":"system","content":"You are a helpful assistant for a travel agency. Answer briefly and politely, and never discuss internal pricing rules."}')
for i = 1, 5 do
  table.insert(turns, '{"role":"user","content":"Turn ' .. i .. ': I would like to plan a trip to Lisbon in the spring with my family of four, staying near the old town, with a day trip to Sintra and some time on the beaches nearby. What do you suggest for hotels, restaurants and getting around without a car?"}')
  table.insert(turns, '{"role":"assistant","content":"For turn ' .. i .. ': stay in Baixa or Chiado, take tram 28 and the train to Sintra from Rossio; Cascais beaches are 40 minutes by train from Cais do Sodre. Try the pastelarias in Belem."}')
end
table.insert(turns, '{"role":"user","content":"And what about the weather in April?"}')
wrk.body = '{"model":"bench","messages":[' .. table.concat(turns, ",") .. ']}'
