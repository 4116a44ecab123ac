"""Reference implementation of palisade-encoder's input formatting and forward pass.

The Rust crate (`crates/palisade-encoder`) and the Python trainer must format
text and score it identically; this module is the Python side of that
contract, and `tests/fixtures/make_fixtures.py` uses it to produce the
logits the Rust parity test checks against. It is never a runtime
dependency of Palisade.

Contract (keep in step with `src/windows.rs` and `src/model.rs`):

* channel is one of CHANNELS; text and channel are tokenized without
  special tokens (the tokenizer.json's own truncation and padding are off);
* windows of W = max_tokens - 3 - len(channel_ids) text ids, starting at
  0, stride, 2*stride, ... until a window reaches the end of the text (the
  last one may be shorter); empty text gives one window with no text ids;
* more than max_windows windows: the first max_windows // 2 and the last
  max_windows - max_windows // 2 are kept;
* each window is `[CLS] channel [SEP] window [SEP]`, token types 0 for
  `[CLS] channel [SEP]` and 1 for the rest; all windows in one padded batch;
* BERT last hidden state -> mean over the attention mask -> tanh(head.dense)
  -> head.out = K logits per window; a text's score is the max over windows.
"""

from __future__ import annotations

import os
from typing import Dict, List, Sequence, Tuple

import torch
from safetensors import safe_open
from safetensors.torch import load_file

FORMAT = "palisade-encoder-1"
CHANNELS = ("user", "system", "retrieved", "tool_output")
CLS_ID = 101
SEP_ID = 102
HEAD_TENSORS = ("head.dense.weight", "head.dense.bias", "head.out.weight", "head.out.bias")

# all-MiniLM-L6-v2's config.json; the fetched model directory holds only the
# weights and tokenizer.json, so the architecture is fixed here (and in Rust).
MINILM_CONFIG = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    hidden_act="gelu",
    hidden_dropout_prob=0.0,
    attention_probs_dropout_prob=0.0,
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    pad_token_id=0,
)


def _backend(tokenizer):
    """A `tokenizers.Tokenizer` with truncation and padding off.

    Accepts a `tokenizers.Tokenizer` or a transformers fast tokenizer (its
    `backend_tokenizer`). all-MiniLM's tokenizer.json truncates and pads to
    128 tokens by default, which would silently cut long texts.
    """
    tok = getattr(tokenizer, "backend_tokenizer", tokenizer)
    tok.no_truncation()
    tok.no_padding()
    return tok


def _ids(tok, text: str) -> List[int]:
    return list(tok.encode(text, add_special_tokens=False).ids)


def split_windows(ids: Sequence[int], width: int, stride: int, max_windows: int) -> List[List[int]]:
    """Windows of `width` ids every `stride` ids, capped to max_windows (head and tail kept)."""
    if width < 1 or stride < 1 or max_windows < 1:
        raise ValueError("width, stride and max_windows must be at least 1")
    windows = []
    start = 0
    while True:
        windows.append(list(ids[start : start + width]))
        if start + width >= len(ids):
            break
        start += stride
    if len(windows) > max_windows:
        head = max_windows // 2
        windows = windows[:head] + windows[len(windows) - (max_windows - head) :]
    return windows


def format_windows(
    tokenizer, channel: str, text: str, max_tokens: int, stride: int, max_windows: int
) -> List[Tuple[List[int], List[int]]]:
    """The model inputs for one text: a list of (input_ids, token_type_ids)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    tok = _backend(tokenizer)
    channel_ids = _ids(tok, channel)
    width = max_tokens - 3 - len(channel_ids)
    if width < 1:
        raise ValueError(f"max_tokens {max_tokens} leaves no room for text")
    out = []
    for window in split_windows(_ids(tok, text), width, stride, max_windows):
        input_ids = [CLS_ID] + channel_ids + [SEP_ID] + window + [SEP_ID]
        type_ids = [0] * (len(channel_ids) + 2) + [1] * (len(window) + 1)
        out.append((input_ids, type_ids))
    return out


def batch_windows(windows: Sequence[Tuple[List[int], List[int]]]):
    """Pads windows into (input_ids, token_type_ids, attention_mask) tensors."""
    length = max(len(ids) for ids, _ in windows)
    ids = torch.zeros(len(windows), length, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, (input_ids, type_ids) in enumerate(windows):
        ids[row, : len(input_ids)] = torch.tensor(input_ids)
        types[row, : len(type_ids)] = torch.tensor(type_ids)
        mask[row, : len(input_ids)] = 1
    return ids, types, mask


def read_meta(tuned_path: str) -> Dict[str, object]:
    """The overlay's metadata, parsed as the Rust crate parses it."""
    with safe_open(tuned_path, "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"overlay format {meta.get('format')!r}, expected {FORMAT!r}")
    return {
        "outputs": [name.strip() for name in meta["outputs"].split(",")],
        "max_tokens": int(meta["max_tokens"]),
        "stride": int(meta["stride"]),
        "max_windows": int(meta["max_windows"]),
    }


class Scorer:
    """Base weights + overlay + head, loaded once; `score` as the Rust `Encoder::score`."""

    def __init__(self, model_dir_or_base: str, tuned_path: str):
        from tokenizers import Tokenizer
        from transformers import BertConfig, BertModel

        if os.path.isdir(model_dir_or_base):
            base_path = os.path.join(model_dir_or_base, "model.safetensors")
            tok_path = os.path.join(model_dir_or_base, "tokenizer.json")
        else:
            base_path = model_dir_or_base
            tok_path = os.path.join(os.path.dirname(model_dir_or_base), "tokenizer.json")
        self.tokenizer = _backend(Tokenizer.from_file(tok_path))
        self.meta = read_meta(tuned_path)

        base = load_file(base_path)
        tuned = load_file(tuned_path)
        head = {k: v.float() for k, v in tuned.items() if k.startswith("head.")}
        if set(head) != set(HEAD_TENSORS):
            raise ValueError(f"overlay head tensors {sorted(head)}, expected {list(HEAD_TENSORS)}")
        for name, tensor in tuned.items():
            if name.startswith("head."):
                continue
            if name not in base:
                raise ValueError(f"overlay tensor {name} is not in the base model")
            if tuple(tensor.shape) != tuple(base[name].shape):
                raise ValueError(f"overlay tensor {name} has shape {tuple(tensor.shape)}")
            base[name] = tensor.float()

        config = BertConfig(**MINILM_CONFIG)
        config._attn_implementation = "eager"
        model = BertModel(config, add_pooling_layer=False)
        wanted = model.state_dict()
        state = {k: v for k, v in base.items() if k in wanted}
        missing = set(wanted) - set(state)
        # position_ids is a buffer some transformers versions do not persist.
        missing.discard("embeddings.position_ids")
        if missing:
            raise ValueError(f"base weights miss {sorted(missing)}")
        model.load_state_dict(state, strict=False)
        self.model = model.eval()

        self.dense = torch.nn.Linear(384, 384)
        self.out = torch.nn.Linear(384, head["head.out.weight"].shape[0])
        with torch.no_grad():
            self.dense.weight.copy_(head["head.dense.weight"])
            self.dense.bias.copy_(head["head.dense.bias"])
            self.out.weight.copy_(head["head.out.weight"])
            self.out.bias.copy_(head["head.out.bias"])

    def windows(self, channel: str, text: str) -> List[Tuple[List[int], List[int]]]:
        m = self.meta
        return format_windows(
            self.tokenizer, channel, text, m["max_tokens"], m["stride"], m["max_windows"]
        )

    @torch.no_grad()
    def window_logits(self, channel: str, text: str) -> torch.Tensor:
        """Logits per window, shape [windows, K]."""
        ids, types, mask = batch_windows(self.windows(channel, text))
        hidden = self.model(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state
        weights = mask.unsqueeze(-1).float()
        pooled = (hidden * weights).sum(1) / weights.sum(1)
        return self.out(torch.tanh(self.dense(pooled)))

    def score(self, channel: str, text: str) -> List[float]:
        """Per output, the max logit over the text's windows."""
        return self.window_logits(channel, text).max(0).values.tolist()


def score(model_dir_or_base: str, tuned_path: str, channel: str, text: str) -> List[float]:
    """One-shot scoring (loads the model each call; use `Scorer` for many texts)."""
    return Scorer(model_dir_or_base, tuned_path).score(channel, text)
