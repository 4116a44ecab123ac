"""Calibrates the cascade and reports the held-out fold.

python calibrate.py UNSEEN.jsonl UNSEEN_STAGE1.jsonl CAL_OUT.json

UNSEEN.jsonl: score_unseen.py's output; UNSEEN_STAGE1.jsonl: the same rows through the shipped
first stage (`cargo run --release -p palisade-eval --example scan_stdin`).
- consult: the first-stage score at the 90th percentile of benign rows the encoder never saw
  (real train/benign prompts; real clean documents), so ~10% of benign traffic reaches it;
- flag logit: among benign rows in the band, the encoder may add at most 0.5% of all benign
  rows as new flags;
- block logit: 0.5 above the highest benign logit seen.
FLAG/BLOCK are the shipped first stage's calibrated thresholds."""
import json, sys, collections
import numpy as np
rows = [json.loads(l) for l in open(sys.argv[1])]
s1 = [json.loads(l) for l in open(sys.argv[2])]
FLAG, BLOCK = 0.859, 0.970
for r, s in zip(rows, s1):
    r["s1"] = s["score"]
def auc(p, n):
    p = np.asarray(p); n = np.asarray(n)
    if len(p) == 0 or len(n) == 0: return float("nan")
    allv = np.concatenate([p, n]); ranks = allv.argsort().argsort() + 1.0
    # ties: average ranks
    from scipy.stats import rankdata
    ranks = rankdata(allv)
    return (ranks[:len(p)].sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(n))
def tpr_at(p, n, fpr=0.01):
    th = np.quantile(n, 1 - fpr); return float((np.asarray(p) > th).mean())
user_benign = [r for r in rows if r["kind"] == "benign_user" and r["source"] == "train/benign"]
data_benign = [r for r in rows if r["kind"] == "benign_context" and not r["source"].startswith("synth/")]
print("calibration rows: user", len(user_benign), "data", len(data_benign))
cal = {}
for name, ben in (("user", user_benign), ("data", data_benign)):
    s = np.array([r["s1"] for r in ben]); e = np.array([r["encoder_logit"] for r in ben])
    consult = float(np.quantile(s, 0.90))
    band = (s >= consult) & (s < FLAG)
    # flag logit: the encoder adds at most 0.5% of benign rows as new flags
    cands = np.sort(e[band])[::-1]
    k = int(0.005 * len(ben))
    lf = float(cands[k]) + 1e-3 if len(cands) > k else float(cands.min() if len(cands) else 0)
    lb = float(e.max()) + 0.5
    lb = max(lb, lf + 0.5)
    cal[name] = dict(consult=consult, flag=lf, block=lb)
    print(name, "consult", round(consult, 4), "flag logit", round(lf, 3), "block logit", round(lb, 3),
          "benign s1 flag", round(float((s >= FLAG).mean()), 4), "e p99", round(float(np.quantile(e, .99)), 3))
def mapped(l, c):
    span = max(c["block"] - c["flag"], 1e-3)
    if l < c["flag"]: return FLAG * np.exp(-(c["flag"] - l) / span)
    if l <= c["block"]: return FLAG + (BLOCK - FLAG) * (l - c["flag"]) / span
    return 1 - (1 - BLOCK) * np.exp(-(l - c["block"]) / span)
for r in rows:
    c = cal["data" if r["channel"] in ("retrieved", "tool_output") else "user"]
    r["consulted"] = r["s1"] >= c["consult"] and r["s1"] < BLOCK
    r["cascade"] = max(r["s1"], mapped(r["encoder_logit"], c)) if r["consulted"] else r["s1"]
    r["e_only"] = mapped(r["encoder_logit"], c)
held = [r for r in rows if r["fold"] == 0]
print(f"\nheld-out fold 0: {len(held)} rows")
print(f"{'source':34} {'n':>5} {'s1 flag':>8} {'casc flag':>9} {'e-only flag':>11} {'consulted':>9}")
by = collections.defaultdict(list)
for r in held: by[(r["source"], r["kind"])].append(r)
for (src, kind), rs in sorted(by.items()):
    f1 = np.mean([r["s1"] >= FLAG for r in rs]); fc = np.mean([r["cascade"] >= FLAG for r in rs]); fe = np.mean([r["e_only"] >= FLAG for r in rs])
    co = np.mean([r["consulted"] for r in rs])
    print(f"{src[:26]+'/'+kind[:7]:34} {len(rs):5d} {f1:8.3f} {fc:9.3f} {fe:11.3f} {co:9.3f}")
for grp, chans in (("user", ("user", "system")), ("data", ("retrieved", "tool_output"))):
    att = [r for r in held if r["kind"] == "attack" and r["channel"] in chans]
    ben = [r for r in held if r["kind"] in ("benign_user", "benign_context") and r["channel"] in chans]
    for key in ("s1", "encoder_logit", "cascade"):
        p = [r[key] for r in att]; n = [r[key] for r in ben]
        print(grp, key, "AUC", round(auc(p, n), 3), "TPR@1%", round(tpr_at(p, n), 3), len(p), len(n))
json.dump(cal, open(sys.argv[3], "w"), indent=1)
