"""Calibrates the cascade on rows neither stage trained on, reports the held-out fold, and
(optionally) writes the calibration into the overlay's metadata (`cascade.*`).

python calibrate.py EXAMPLES.jsonl OOF.jsonl EXAMPLES_STAGE1.jsonl CAL_OUT.json UNSEEN.jsonl [UNSEEN.jsonl ...]
    [--overlay IN.safetensors OUT.safetensors]

EXAMPLES.jsonl: dump_examples output (with --clean-docs). OOF.jsonl: the first stage's out-of-fold
scores for the examples the shipped first stage trained on, in the same order (`palisade-eval
--example oof_scores`, same flags as the shipped artifact: none); EXAMPLES_STAGE1.jsonl: every
example through the shipped first stage (`scan_stdin`), used only for rows the first stage never
trained on (the clean-document corpus and its synthetic twins). UNSEEN.jsonl: score_unseen.py
outputs (encoder logits on rows the encoder never trained on).

First-stage score of a row (`s1`): its out-of-fold score from heads that never saw its source
family (`score_grouped`), never its in-sample score (the bug of the first calibration: in-sample
scores of benign rows are low, so the band let in half of new benign prompts).

- consult (per channel group): the lowest first-stage score such that every real benign pool
  (train/benign source families with >= 100 rows; train/benign_context families with >= 100 rows;
  the Debian clean-document corpus) has <= 10% of its rows in the band [consult, BLOCK) (the
  strictest pool decides), on all rows of the pool: `s1` is out of sample for every one;
- flag logit: the smallest logit at which, in every real benign pool, the encoder adds at most
  0.5% of the pool's rows as new flags (rows in the band below the first stage's flag threshold);
  pools are the encoder-unseen rows of each source family with >= 100 such rows;
- block logit: 0.5 above the highest logit of any benign row the encoder never saw (synthetic
  included), and at least 0.5 above the flag logit.
FLAG/BLOCK are the shipped first stage's calibrated thresholds."""
import argparse, collections, json, sys
import numpy as np
from scipy.stats import rankdata

FLAG, BLOCK = 0.8592, 0.9703
STAGE1 = "seed42+f001d6027e9b"
CONSULT_SHARE, ADDED_FLAGS, MIN_POOL = 0.10, 0.005, 100
DATA = ("retrieved", "tool_output")


def group_of(channel):
    return "data" if channel in DATA else "user"


def real_benign_pool(r):
    """The calibration pool of a real benign row (None: synthetic, attack or harmful)."""
    if r["kind"] == "benign_user" and r["source"] == "train/benign":
        return r["group"]
    if r["kind"] == "benign_context" and r["source"] == "train/benign_context":
        return r["group"]
    if r["kind"] == "benign_context" and r["source"] == "debian/clean_docs":
        return "debian/clean_docs"
    return None


def load_s1(examples, oof, scans):
    """s1 per (text, channel): out-of-fold where the first stage trained on the row, else the
    shipped first stage's scan (out of sample for it)."""
    ex = [json.loads(l) for l in open(examples)]
    of = [json.loads(l) for l in open(oof)]
    sc = [json.loads(l)["score"] for l in open(scans)]
    assert len(sc) == len(ex) and len(of) <= len(ex)
    s1, origin = {}, {}
    for i, r in enumerate(ex):
        key = (r["text"], r["channel"])
        if i < len(of):
            o = of[i]
            assert (o["source"], o["channel"], o["kind"]) == (r["source"], r["channel"], r["kind"]), i
            if key not in s1 or origin[key] == "scan":
                s1[key], origin[key] = o["score_grouped"], "oof"
        elif key not in s1:
            s1[key], origin[key] = sc[i], "scan"
    return ex, s1, origin


def auc(p, n):
    if len(p) == 0 or len(n) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([p, n]))
    return (ranks[:len(p)].sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(n))


def tpr_at(p, n, fpr=0.01):
    th = np.quantile(n, 1 - fpr)
    return float((np.asarray(p) > th).mean())


def mapped(l, c):
    span = max(c["block"] - c["flag"], 1e-3)
    if l < c["flag"]:
        return FLAG * np.exp(-(c["flag"] - l) / span)
    if l <= c["block"]:
        return FLAG + (BLOCK - FLAG) * (l - c["flag"]) / span
    return 1 - (1 - BLOCK) * np.exp(-(l - c["block"]) / span)


def band_start(scores):
    """The lowest consult score at which at most CONSULT_SHARE of `scores` fall in the band
    [consult, BLOCK) (rows at or above BLOCK are blocked without a second opinion)."""
    below = sorted(x for x in scores if x < BLOCK)
    k = int(CONSULT_SHARE * len(scores))
    if k >= len(below):
        return 0.0
    # Ties at the k-th largest would let more in: start just above them.
    return float(np.nextafter(np.float32(below[len(below) - k - 1]), np.float32(1.0)))


def calibrate(ex, s1, unseen):
    cal = {}
    for name in ("user", "data"):
        # Band: every real benign pool (all its rows: s1 is out of sample for each) <= 10%.
        pools = collections.defaultdict(list)
        seen = set()
        for r in ex:
            key = (r["text"], r["channel"])
            p = real_benign_pool(r)
            if p and group_of(r["channel"]) == name and key not in seen:
                seen.add(key)
                pools[p].append(s1[key])
        q = {p: band_start(v) for p, v in pools.items() if len(v) >= MIN_POOL}
        consult = max(q.values())
        print(f"{name} band: lowest start per pool", {p: round(v, 3) for p, v in sorted(q.items())})
        # Flag logit: new flags <= 0.5% of each real pool's encoder-unseen rows.
        epools = collections.defaultdict(list)
        for r in unseen:
            p = real_benign_pool(r)
            if p and group_of(r["channel"]) == name:
                epools[p].append(r)
        lf = -1e9
        for p, rs in sorted(epools.items()):
            if len(rs) < MIN_POOL:
                continue
            band = sorted((r["encoder_logit"] for r in rs if consult <= r["s1"] < FLAG), reverse=True)
            k = int(ADDED_FLAGS * len(rs))  # rows this pool may gain
            need = band[k] + 1e-3 if len(band) > k else -1e9
            print(f"  {name} pool {p[:60]}: {len(rs)} encoder-unseen rows, {len(band)} in band, "
                  f"flag logit >= {need:.3f}")
            lf = max(lf, need)
        benign_logits = [r["encoder_logit"] for r in unseen
                         if r["kind"] in ("benign_user", "benign_context") and group_of(r["channel"]) == name]
        if lf < -1e8:  # no pool constrains it: the encoder's own benign 99th percentile
            lf = float(np.quantile(benign_logits, 0.99))
        lb = max(max(benign_logits) + 0.5, lf + 0.5)
        cal[name] = dict(consult=consult, flag=lf, block=lb)
        print(f"{name}: consult {consult:.4f} flag logit {lf:.3f} block logit {lb:.3f}")
    return cal


def report(unseen, cal):
    for r in unseen:
        c = cal[group_of(r["channel"])]
        r["consulted"] = c["consult"] <= r["s1"] < BLOCK
        r["cascade"] = max(r["s1"], mapped(r["encoder_logit"], c)) if r["consulted"] else r["s1"]
    held = [r for r in unseen if r["fold"] == 0]
    print(f"\nheld-out fold 0 (sources neither stage trained on): {len(held)} rows; s1 out of fold")
    print("| source (fold 0) | rows | consulted | first stage | cascade | first stage in-sample |")
    print("|---|---:|---:|---:|---:|---:|")
    by = collections.defaultdict(list)
    for r in held:
        by[(r["source"], r["kind"])].append(r)
    for (src, kind), rs in sorted(by.items(), key=lambda kv: (kv[0][1] != "attack", kv[0][0])):
        f = lambda key: 100 * np.mean([r[key] >= FLAG for r in rs])
        co = 100 * np.mean([r["consulted"] for r in rs])
        ins = 100 * np.mean([r["s1_insample"] >= FLAG for r in rs])
        label = "attack" if kind == "attack" else ("harmful" if kind == "harmful" else "benign")
        print(f"| {src} ({label}) | {len(rs)} | {co:.1f}% | {f('s1'):.1f}% | {f('cascade'):.1f}% | {ins:.1f}% |")
    for grp in ("user", "data"):
        att = [r for r in held if r["kind"] == "attack" and group_of(r["channel"]) == grp]
        ben = [r for r in held if r["kind"] in ("benign_user", "benign_context") and group_of(r["channel"]) == grp]
        for key in ("s1", "encoder_logit", "cascade"):
            p = np.array([r[key] for r in att]); n = np.array([r[key] for r in ben])
            print(f"{grp} {key}: AUC {auc(p, n):.3f} TPR@1% {tpr_at(p, n):.3f} ({len(p)} attacks, {len(n)} benign)")
    print("\nreal benign pools, all encoder-unseen rows (fold 0 and undrawn rows of folds 1-4):")
    print("| pool | rows | consulted | first stage flag | cascade flag | added |")
    print("|---|---:|---:|---:|---:|---:|")
    pools = collections.defaultdict(list)
    for r in unseen:
        p = real_benign_pool(r)
        if p:
            pools[(group_of(r["channel"]), p)].append(r)
    for (grp, p), rs in sorted(pools.items()):
        f1 = 100 * np.mean([r["s1"] >= FLAG for r in rs]); fc = 100 * np.mean([r["cascade"] >= FLAG for r in rs])
        co = 100 * np.mean([r["consulted"] for r in rs])
        print(f"| {grp}: {p} | {len(rs)} | {co:.1f}% | {f1:.1f}% | {fc:.1f}% | {fc - f1:+.1f} pt |")


def write_overlay(src, dst, cal):
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(src, "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update({
        "cascade.consult_user": f"{cal['user']['consult']:.4f}",
        "cascade.consult_data": f"{cal['data']['consult']:.4f}",
        "cascade.user_flag": f"{cal['user']['flag']:.4f}",
        "cascade.user_block": f"{cal['user']['block']:.4f}",
        "cascade.data_flag": f"{cal['data']['flag']:.4f}",
        "cascade.data_block": f"{cal['data']['block']:.4f}",
        "cascade.stage1": STAGE1,
        "cascade.calibrated_on": "first-stage out-of-fold scores (palisade-eval oof_scores), encoder-unseen rows",
    })
    save_file(tensors, dst, metadata=meta)
    print("wrote", dst, {k: v for k, v in sorted(meta.items()) if k.startswith("cascade.")})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("examples"); ap.add_argument("oof"); ap.add_argument("stage1"); ap.add_argument("out")
    ap.add_argument("unseen", nargs="+")
    ap.add_argument("--overlay", nargs=2, metavar=("IN", "OUT"))
    a = ap.parse_args()
    ex, s1, origin = load_s1(a.examples, a.oof, a.stage1)
    insample = {(r["text"], r["channel"]): json.loads(l)["score"] for r, l in zip(ex, open(a.stage1))}
    unseen, keys = [], set()
    for path in a.unseen:
        for l in open(path):
            r = json.loads(l)
            key = (r["text"], r["channel"])
            if key in keys:
                continue
            keys.add(key)
            if "group" not in r:  # older score_unseen output: recover the group
                r["group"] = None
            r["s1"], r["s1_origin"], r["s1_insample"] = s1[key], origin[key], insample[key]
            unseen.append(r)
    groups = {}
    for r in ex:
        groups.setdefault((r["text"], r["channel"]), r["group"])
    for r in unseen:
        r["group"] = r["group"] or groups[(r["text"], r["channel"])]
    print(f"{len(unseen)} encoder-unseen rows; s1 from", dict(collections.Counter(r["s1_origin"] for r in unseen)))
    cal = calibrate(ex, s1, unseen)
    report(unseen, cal)
    json.dump(cal, open(a.out, "w"), indent=1)
    if a.overlay:
        write_overlay(a.overlay[0], a.overlay[1], cal)


if __name__ == "__main__":
    main()
