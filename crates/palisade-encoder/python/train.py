"""Fine-tunes the top layers of all-MiniLM-L6-v2 plus a head as Palisade's second-stage
attack scorer. Reads the examples stage-1 training sees (examples/dump_examples.rs: train/,
synthetic, clean-document corpus); never eval/. Groups (source families) are split into
five folds by a hash of the group; fold 0 is held out: it never trains the encoder and is
where the cascade's combination is fitted and the encoder is judged.

python train.py EXAMPLES.jsonl BASE_DIR OUT_DIR [--seed 42] [--epochs 1]
"""
import argparse, hashlib, json, math, os, random, sys, time
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encoder_ref import batch_windows, format_windows  # noqa: E402  the Rust crate's mirror, pinned by its parity test

FORMAT = "palisade-encoder-1"


def fold_of(group: str, folds: int = 5) -> int:
    return int.from_bytes(hashlib.sha256(group.encode()).digest()[:8], "little") % folds


class Scorer(torch.nn.Module):
    def __init__(self, base_dir, k=1):
        super().__init__()
        self.bert = BertModel.from_pretrained(base_dir, add_pooling_layer=False)
        self.dense = torch.nn.Linear(384, 384)
        self.out = torch.nn.Linear(384, k)

    def forward(self, ids, types, mask):
        h = self.bert(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.out(torch.tanh(self.dense(pooled)))


def score_examples(model, items, batch_size=64):
    """Max logit over each item's windows, forward only."""
    model.eval()
    flat, owner = [], []
    for i, it in enumerate(items):
        for w in it["windows"]:
            flat.append(w); owner.append(i)
    order = sorted(range(len(flat)), key=lambda j: len(flat[j][0]))
    logits = np.zeros(len(flat), dtype=np.float32)
    with torch.no_grad():
        for b in range(0, len(order), batch_size):
            idx = order[b:b + batch_size]
            ids, types, mask = batch_windows([flat[j] for j in idx])
            logits[idx] = model(ids, types, mask)[:, 0].numpy()
    best = np.full(len(items), -1e9, dtype=np.float32)
    for j, i in enumerate(owner):
        best[i] = max(best[i], logits[j])
    return best


def unique_rows(path):
    """The examples file's rows, first of each (text, channel)."""
    seen, out = set(), []
    for line in open(path):
        r = json.loads(line)
        key = (r["text"], r["channel"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def train_cap(src):
    """Rows per source the encoder trains on (synthetic sources are capped hardest)."""
    if src.startswith("synth/"):
        return 300
    if src.startswith("train/harmful"):
        return 600
    return 1200


def cap_by_source(rows, caps, rng):
    by = {}
    for r in rows:
        by.setdefault(r["source"], []).append(r)
    out = []
    for src, rs in sorted(by.items()):
        cap = caps(src)
        rng.shuffle(rs)
        out.extend(rs[:cap])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("examples"); ap.add_argument("base"); ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--stride", type=int, default=96)
    ap.add_argument("--max-windows", type=int, default=8)
    ap.add_argument("--train-from-layer", type=int, default=3)
    ap.add_argument("--lr", type=float, default=6e-5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--limit-minutes", type=float, default=60)
    a = ap.parse_args()
    rng = random.Random(a.seed); torch.manual_seed(a.seed); np.random.seed(a.seed)
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    tok = AutoTokenizer.from_pretrained(a.base)
    rows = unique_rows(a.examples)
    for r in rows:
        r["fold"] = fold_of(r["group"])
        r["y"] = 1.0 if r["kind"] == "attack" else 0.0
    def val_cap(src):
        return 250
    train_rows = cap_by_source([r for r in rows if r["fold"] != 0], train_cap, rng)
    val_rows = cap_by_source([r for r in rows if r["fold"] == 0], val_cap, rng)
    print(f"train {len(train_rows)} val {len(val_rows)} (of {len(rows)} unique)", flush=True)
    for r in train_rows + val_rows:
        r["windows"] = format_windows(tok, r["channel"], r["text"], a.max_tokens, a.stride, a.max_windows)

    model = Scorer(a.base)
    for p in model.bert.embeddings.parameters(): p.requires_grad = False
    for layer in model.bert.encoder.layer[:a.train_from_layer]:
        for p in layer.parameters(): p.requires_grad = False
    body = [p for n, p in model.bert.named_parameters() if p.requires_grad]
    head = list(model.dense.parameters()) + list(model.out.parameters())
    opt = torch.optim.AdamW([{"params": body, "lr": a.lr}, {"params": head, "lr": a.lr * 10}], weight_decay=0.01)
    # class balance: attacks and non-attacks weigh the same in the loss
    pos = sum(r["y"] for r in train_rows); neg = len(train_rows) - pos
    steps = int(math.ceil(len(train_rows) * a.epochs / a.batch))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.05, 1 - s / steps))
    order = []
    while len(order) < steps * a.batch:
        o = list(range(len(train_rows))); rng.shuffle(o); order.extend(o)
    # length-bucketed batches: sort chunks of 20 batches by window count x length
    batches = []
    for c in range(0, steps * a.batch, a.batch * 20):
        chunk = sorted(order[c:c + a.batch * 20], key=lambda i: sum(len(w[0]) for w in train_rows[i]["windows"]))
        batches.extend(chunk[b:b + a.batch] for b in range(0, len(chunk), a.batch))
    rng.shuffle(batches)
    t0 = time.time(); model.train(); lossavg = None
    for step, bidx in enumerate(batches):
        flat, owner = [], []
        for k, i in enumerate(bidx):
            for w in train_rows[i]["windows"]:
                flat.append(w); owner.append(k)
        ids, types, mask = batch_windows(flat)
        logits = model(ids, types, mask)[:, 0]
        own = torch.tensor(owner)
        best = torch.full((len(bidx),), -1e9).scatter_reduce(0, own, logits, reduce="amax")
        y = torch.tensor([train_rows[i]["y"] for i in bidx])
        wt = torch.where(y > 0, 0.5 * len(train_rows) / pos, 0.5 * len(train_rows) / neg)
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(best, y, reduction="none") * wt).mean()
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); sched.step()
        lossavg = loss.item() if lossavg is None else 0.98 * lossavg + 0.02 * loss.item()
        if step % 25 == 0:
            el = time.time() - t0
            print(f"step {step}/{len(batches)} loss {lossavg:.4f} {el:.0f}s eta {el / (step + 1) * (len(batches) - step - 1):.0f}s", flush=True)
        if time.time() - t0 > a.limit_minutes * 60:
            print(f"time limit at step {step}", flush=True); break
    os.makedirs(a.out, exist_ok=True)
    tensors = {}
    for n, p in model.bert.named_parameters():
        if n.startswith("encoder.layer.") and int(n.split(".")[2]) >= a.train_from_layer:
            tensors[n] = p.detach().to(torch.float16).contiguous()
    tensors["head.dense.weight"] = model.dense.weight.detach().contiguous()
    tensors["head.dense.bias"] = model.dense.bias.detach().contiguous()
    tensors["head.out.weight"] = model.out.weight.detach().contiguous()
    tensors["head.out.bias"] = model.out.bias.detach().contiguous()
    meta = {"format": FORMAT, "outputs": "attack", "max_tokens": str(a.max_tokens), "stride": str(a.stride),
            "max_windows": str(a.max_windows), "seed": str(a.seed), "train_from_layer": str(a.train_from_layer),
            "trained_examples": str(len(train_rows)), "steps": str(step + 1)}
    save_file(tensors, os.path.join(a.out, "tuned.safetensors"), metadata=meta)
    # Held-out fold: the model's own f16 weights are what ships, so score with them.
    for n, p in model.bert.named_parameters():
        if n in tensors: p.data = tensors[n].to(torch.float32)
    val_scores = score_examples(model, val_rows)
    with open(os.path.join(a.out, "heldout_scores.jsonl"), "w") as f:
        for r, s in zip(val_rows, val_scores):
            f.write(json.dumps({"text": r["text"], "channel": r["channel"], "system_prompt": r.get("system_prompt"),
                                "kind": r["kind"], "source": r["source"], "group": r["group"], "encoder_logit": float(s)}) + "\n")
    print(f"done in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
