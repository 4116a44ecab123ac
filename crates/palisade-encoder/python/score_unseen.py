"""Scores, with an exported overlay, the rows the encoder never trained on: every benign row
of any fold not drawn for training (calibration of the benign thresholds) and the held-out
fold 0 (transfer), writing JSON lines with the encoder logit.

python score_unseen.py EXAMPLES.jsonl BASE_DIR TUNED.safetensors OUT.jsonl [--cap 600] [--sources a,b]

--cap: rows per source at most (seeded draw); --sources: only these sources (e.g. the real
benign pools, scored in full for the cascade's calibration)."""
import json, random, sys, os
import numpy as np, torch
from safetensors import safe_open
from transformers import AutoTokenizer
sys.path.insert(0, os.path.dirname(__file__))
from train import Scorer, cap_by_source, fold_of, score_examples, train_cap, unique_rows
from encoder_ref import format_windows

import argparse
ap = argparse.ArgumentParser()
ap.add_argument("examples"); ap.add_argument("base"); ap.add_argument("tuned"); ap.add_argument("out")
ap.add_argument("--cap", type=int, default=600)
ap.add_argument("--sources", default="")
a = ap.parse_args()
examples, base, tuned, out = a.examples, a.base, a.tuned, a.out
only = {s for s in a.sources.split(",") if s}
seed = 42
rng = random.Random(seed)
tok = AutoTokenizer.from_pretrained(base)
rows = unique_rows(examples)
for r in rows: r["fold"] = fold_of(r["group"])
train_rows = cap_by_source([r for r in rows if r["fold"] != 0], train_cap, rng)
used = {(r["text"], r["channel"]) for r in train_rows}
pick = [r for r in rows if (r["text"], r["channel"]) not in used and (r["fold"] == 0 or r["kind"] in ("benign_user", "benign_context"))
        and (not only or r["source"] in only)]
# bound the work: at most `cap` rows per source
by = {}
for r in pick: by.setdefault(r["source"], []).append(r)
rng2 = random.Random(7); pick = []
for s, rs in sorted(by.items()):
    rng2.shuffle(rs); pick.extend(rs[:a.cap])
print(len(pick), "rows to score", flush=True)
torch.set_num_threads(int(os.environ.get("THREADS", "2")))
model = Scorer(base)
with safe_open(tuned, "pt") as f:
    meta = f.metadata()
    sd = model.bert.state_dict()
    for k in f.keys():
        t = f.get_tensor(k).to(torch.float32)
        if k.startswith("head.dense."): getattr(model.dense, k.split(".")[-1]).data = t
        elif k.startswith("head.out."): getattr(model.out, k.split(".")[-1]).data = t
        else: sd[k].copy_(t)
mt, st, mw = int(meta["max_tokens"]), int(meta["stride"]), int(meta["max_windows"])
for r in pick: r["windows"] = format_windows(tok, r["channel"], r["text"], mt, st, mw)
s = score_examples(model, pick)
with open(out, "w") as f:
    for r, v in zip(pick, s):
        f.write(json.dumps({"text": r["text"], "channel": r["channel"], "system_prompt": r.get("system_prompt"), "kind": r["kind"],
                            "source": r["source"], "group": r["group"], "fold": r["fold"], "encoder_logit": float(v)}) + "\n")
