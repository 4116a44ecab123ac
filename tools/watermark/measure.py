"""Watermark measurements on the bundled tiny llama.cpp model (loopback only).

    python measure.py UPSTREAM_URL TOKENIZER_JSON [N]

Generates N completions of 200 tokens with the watermark's logit_bias map
and N without, straight at the llama.cpp server, with `logprobs: 1` (the
server reports the *unbiased* model's log-probability of each sampled token,
so the watermark's perplexity cost is measured under the same model), then
scores prefixes of 25..200 tokens against the key, and scores the benign
texts of datasets/train tokenized the same way (false positives).

The green list and scoring are a line-by-line replica of palisade-watermark
(HMAC-SHA256 key derivation and PRF, exact binomial tail, distinct tokens);
`palisade watermark detect` is run on full texts by the caller to check the
replica agrees. Tokenization replicates tools/watermark/tiny_tokenizer.py's
Unigram model (words preferred, byte fallback).
"""
import hashlib
import hmac
import json
import math
import random
import sys
import time
import urllib.request

URL, TOKENIZER = sys.argv[1], sys.argv[2]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 50
MASTER = bytes.fromhex("ab" * 32)
TENANT, PERIOD, GAMMA, DELTA = "local", 0, 0.25, 2.0

tok = json.load(open(TOKENIZER))
vocab = [p for p, _ in tok["model"]["vocab"]]
V = len(vocab)
words = {p: i for i, p in enumerate(vocab) if p.startswith("\u2581") and len(p) > 1}
byte_id = {int(p[3:5], 16): i for i, p in enumerate(vocab) if p.startswith("<0x")}


def derive_key(master, tenant, period):
    msg = b"palisade-watermark-v1" + len(tenant).to_bytes(8, "big") + tenant.encode() + period.to_bytes(8, "big")
    return hmac.new(master, msg, hashlib.sha256).digest()


def green_list(key, vocab_size, gamma):
    ranked = sorted((int.from_bytes(hmac.new(key, t.to_bytes(4, "big"), hashlib.sha256).digest()[:8], "big"), t)
                    for t in range(vocab_size))
    n = round(gamma * vocab_size)
    return {t for _, t in ranked[:n]}


def tokenize(text):
    s = text.replace(" ", "\u2581")
    n = len(s)
    best = [(-1e18, None)] * (n + 1)
    best[0] = (0.0, None)
    for i in range(n):
        if best[i][0] < -1e17:
            continue
        for w, wid in words.items():
            if s.startswith(w, i) and best[i][0] - 1 > best[i + len(w)][0]:
                best[i + len(w)] = (best[i][0] - 1, (i, [wid]))
        ids = [byte_id[b] for b in s[i].encode()]
        if best[i][0] - 110 > best[i + 1][0]:
            best[i + 1] = (best[i][0] - 110, (i, ids))
    out, j = [], n
    while j > 0:
        i, ids = best[j][1]
        out = ids + out
        j = i
    return out


def binom_sf(k, n, p):
    if k == 0:
        return 1.0
    return min(1.0, sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                                 + i * math.log(p) + (n - i) * math.log(1 - p)) for i in range(k, n + 1)))


def score(ids, green):
    uniq = {t for t in ids if t < V}
    n, g = len(uniq), len(uniq & green)
    gamma = len(green) / V
    if n == 0:
        return 0, 0, 0.0, 1.0
    z = (g - gamma * n) / math.sqrt(n * gamma * (1 - gamma))
    return n, g, z, binom_sf(g, n, gamma)


def post(body):
    req = urllib.request.Request(URL + "/completions", json.dumps(body).encode(), {"content-type": "application/json"})
    t = time.time()
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r), time.time() - t


key = derive_key(MASTER, TENANT, PERIOD)
green = green_list(key, V, GAMMA)
bias = {str(t): DELTA for t in sorted(green)}
rng = random.Random(7)
plain_words = [w[1:] for w in words]
runs = {"watermarked": [], "plain": []}
for i in range(N):
    prompt = " ".join(rng.choice(plain_words) for _ in range(8))
    for arm in runs:
        body = {"model": "tiny", "prompt": prompt, "max_tokens": 200, "temperature": 1.0,
                "seed": 1000 + i, "logprobs": 1}
        if arm == "watermarked":
            body["logit_bias"] = bias
        out, secs = post(body)
        c = out["choices"][0]
        lps = [x for x in c["logprobs"]["token_logprobs"] if x is not None]
        runs[arm].append({"text": c["text"], "ids": tokenize(c["text"]), "lps": lps, "secs": secs})

json.dump({arm: [{"text": r["text"]} for r in rs] for arm, rs in runs.items()},
          open("/tmp/wm/generations.json", "w"))
print(f"vocab {V}, gamma {GAMMA} ({len(green)} green), delta {DELTA}, {N} generations per arm, temperature 1.0")
print("\nz-score by scored prefix (distinct tokens counted once):")
print("prefix\tarm\tmean_distinct\tmean_z\tmin_z\tmax_z\tdetected@1e-5")
for L in (10, 25, 50, 100, 200):
    for arm, rs in runs.items():
        sc = [score(r["ids"][:L], green) for r in rs]
        zs = [s[2] for s in sc]
        det = sum(1 for s in sc if s[3] <= 1e-5)
        print(f"{L}\t{arm}\t{sum(s[0] for s in sc)/len(sc):.1f}\t{sum(zs)/len(zs):.2f}\t{min(zs):.2f}\t{max(zs):.2f}\t{det}/{len(sc)}")
print("\nquality (unbiased model's log-probabilities of the sampled tokens):")
for arm, rs in runs.items():
    lps = [x for r in rs for x in r["lps"]]
    mean = sum(lps) / len(lps)
    secs = sorted(r["secs"] for r in rs)
    print(f"{arm}\tmean logprob {mean:.3f}\tperplexity {math.exp(-mean):.1f}\tp50 latency {secs[len(secs)//2]*1000:.0f} ms")
# Retokenization: how many generated tokens the tokenizer gets back.
gen_tokens = sum(len(r["lps"]) for r in runs["watermarked"])
re_tokens = sum(len(r["ids"]) for r in runs["watermarked"])
print(f"\nretokenized / generated tokens (watermarked arm): {re_tokens}/{gen_tokens}")
benign = [json.loads(l)["text"] for l in open("/work/shared/datasets/train/benign.jsonl")][:2000]
sc = [score(tokenize(t), green) for t in benign]
print(f"\ndatasets/train/benign.jsonl, first {len(benign)} texts: max z {max(s[2] for s in sc):.2f}, "
      f"mean z {sum(s[2] for s in sc)/len(sc):.2f}, p<=1e-5: {sum(1 for s in sc if s[3] <= 1e-5)}, "
      f"p<=1e-2: {sum(1 for s in sc if s[3] <= 1e-2)}")
print(f"\nbias map: {len(bias)} entries, {len(json.dumps({'logit_bias': bias}))} bytes of JSON")
