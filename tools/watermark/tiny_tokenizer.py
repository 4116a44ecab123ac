"""Write a Hugging Face tokenizer.json for the bundled tiny llama.cpp model
(shared/tools/tiny-llm), whose GGUF ships only a token list.

    python tiny_tokenizer.py ~/.cache/tiny-llm/tiny.gguf tokenizer.json

The GGUF's vocabulary is 3 specials, 256 byte tokens (<0xNN>) and ~100
words ("▁the", ...). llama.cpp's own SentencePiece-style tokenizer cannot
build those words from text (no intermediate pieces like "▁t" exist), so it
reads any text as byte tokens, while the model *generates* word tokens. For
watermark detection the ids that matter are the generated ones, so this file
is a Unigram model over the same ids (words preferred, byte fallback for
everything else, spaces as "▁"): decoding a generation and encoding the text
again gives back the generated ids, except where a run of byte tokens happens
to spell a word. Ids and vocabulary size are the GGUF's.
"""
import json
import sys

import gguf

src, out = sys.argv[1], sys.argv[2]
reader = gguf.GGUFReader(src)
field = reader.fields["tokenizer.ggml.tokens"]
tokens = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
specials = {0, 1, 2}
vocab = []
for i, t in enumerate(tokens):
    if i in specials or t.startswith("<0x"):
        vocab.append([t, -100.0])
    else:
        vocab.append([t, -1.0])
doc = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [
        {"id": i, "content": tokens[i], "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": True}
        for i in sorted(specials)
    ],
    "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
    "pre_tokenizer": None,
    "post_processor": None,
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ]},
    "model": {"type": "Unigram", "unk_id": 0, "vocab": vocab, "byte_fallback": True},
}
with open(out, "w", encoding="utf-8") as f:
    json.dump(doc, f, ensure_ascii=False)
print(out, len(tokens), "tokens")
