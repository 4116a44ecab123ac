#!/usr/bin/env python3
"""Builds crates/palisade-eval/data/clean_docs.jsonl.gz: a broad clean-document corpus from
Debian's own documentation on this machine (man pages, READMEs, NEWS, TODO, changelogs).

What it is for: clean documents full of *legitimate* imperatives ("run", "set", "do not",
"see"), used by training as benign_context negatives and for calibrating the data-channel
flag rate. What it must not do: read eval/, fetch anything, or be run at training time
(/usr/share differs between machines, so the output file is committed and the trainer reads
only that file).

Usage (from the workspace root, once; needs `man` from man-db and groff-base, which the
script installs with apt-get if `man` is missing):
    python3 crates/palisade-eval/scripts/build_clean_docs.py

Deterministic for a given /usr/share: files are listed sorted, sampled by sha256 of their
path, chunks deduplicated and selected by sha256 of their text. Each row records its package
and that package's licence: the texts are used as training statistics only, never shipped in
the model artifact as text.
"""

import glob
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys

# CLEAN_DOCS_OUT_DIR writes elsewhere (e.g. to check that a rebuild gives the same bytes).
OUT_DIR = os.environ.get("CLEAN_DOCS_OUT_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "data")
OUT = os.path.join(OUT_DIR, "clean_docs.jsonl.gz")
MANIFEST = os.path.join(OUT_DIR, "clean_docs_packages.tsv")

MIN_CHARS, MAX_CHARS = 300, 1500
MAN_PAGES = 5000          # man pages rendered (each render is a bounded subprocess)
MAN_FOREIGN_SHARE = 0.15  # of those, translated pages (de, fr, es, ru, ...)
# Per package and kind, so no package dominates; then a quota per kind: prose with
# imperatives (man pages, READMEs) over terse changelogs. ~9k chunks, ~3 MB gzipped.
CHUNKS_PER_PACKAGE = {"man": 60, "readme": 40, "changelog": 8}
QUOTA = {"man": 5000, "readme": 3000, "changelog": 1500}
HELDOUT_PERCENT = 20      # packages whose chunks are held out from training, for measuring


def h(s):
    return hashlib.sha256(s.encode("utf-8", "surrogateescape")).hexdigest()


def package_of_paths():
    """File path -> Debian package, from dpkg's file lists."""
    owner = {}
    for lst in sorted(glob.glob("/var/lib/dpkg/info/*.list")):
        pkg = os.path.basename(lst)[: -len(".list")].split(":")[0]
        with open(lst, encoding="utf-8", errors="replace") as f:
            for line in f:
                owner[line.rstrip("\n")] = pkg
    return owner


def licence_of(pkg):
    """The first `License:` of a DEP-5 copyright file, else `see copyright`."""
    path = f"/usr/share/doc/{pkg}/copyright"
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("License:"):
                    return line.split(":", 1)[1].strip() or "see copyright"
    except OSError:
        pass
    return "see copyright"


def render_man(path):
    env = dict(os.environ, MANWIDTH="90", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    try:
        r = subprocess.run(
            ["man", "--nh", "--nj", "-l", path],
            capture_output=True, env=env, timeout=10, check=False,
        )
    except subprocess.TimeoutExpired:
        return ""
    text = r.stdout.decode("utf-8", "replace")
    text = re.sub(".\b", "", text)  # any overstrike left
    lines = text.splitlines()
    # Drop the running header and footer lines.
    if len(lines) > 2:
        lines = lines[1:-1]
    return "\n".join(lines)


def read_doc(path):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read(400_000)
        else:
            with open(path, "rb") as f:
                raw = f.read(400_000)
    except (OSError, EOFError):
        return ""
    if b"\0" in raw[:4096]:
        return ""
    return raw.decode("utf-8", "replace")


def chunks(text):
    """Paragraph-aligned pieces of MIN_CHARS..MAX_CHARS characters."""
    text = text.replace("\r\n", "\n")
    paras = [p.strip("\n") for p in re.split(r"\n\s*\n", text)]
    out, cur = [], ""
    for p in paras:
        if not p.strip():
            continue
        if len(p) > MAX_CHARS:
            p = p[:MAX_CHARS].rsplit("\n", 1)[0]
        if cur and len(cur) + len(p) + 2 > MAX_CHARS:
            if len(cur) >= MIN_CHARS:
                out.append(cur)
            cur = ""
        cur = f"{cur}\n\n{p}" if cur else p
    if len(cur) >= MIN_CHARS:
        out.append(cur)
    return out


def key(text):
    return re.sub(r"\s+", " ", text.lower()).strip()


def main():
    if subprocess.run(["sh", "-c", "command -v man"], capture_output=True).returncode:
        # Rendering needs man-db and groff; Debian's own packages, installed only if missing.
        print("man not found: apt-get install -y man-db groff-base", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "man-db", "groff-base"], check=True)
    owner = package_of_paths()
    sources = []  # (kind, path)
    english = sorted(glob.glob("/usr/share/man/man[1-8]/*.gz"))
    foreign = sorted(
        p for p in glob.glob("/usr/share/man/*/man[1-8]/*.gz")
        if not re.match(r"/usr/share/man/man\d/", p)
    )
    n_foreign = int(MAN_PAGES * MAN_FOREIGN_SHARE)
    pick = lambda xs, n: sorted(xs, key=h)[:n]
    for p in pick(english, MAN_PAGES - n_foreign) + pick(foreign, n_foreign):
        sources.append(("man", p))
    for p in sorted(glob.glob("/usr/share/doc/*/*")):
        base = os.path.basename(p).lower()
        if not os.path.isfile(p) or base.startswith("copyright"):
            continue
        if re.match(r"(readme|news|todo|faq|changelog|contributing|howto)|.*\.(md|txt)(\.gz)?$", base):
            kind = "changelog" if base.startswith("changelog") else "readme"
            sources.append((kind, p))

    seen, by_pkg = set(), {}
    for i, (kind, path) in enumerate(sources):
        if i % 500 == 0:
            print(f"{i}/{len(sources)} files", file=sys.stderr)
        text = render_man(path) if kind == "man" else read_doc(path)
        real = os.path.realpath(path)
        pkg = owner.get(path) or owner.get(real)
        if pkg is None and path.startswith("/usr/share/doc/"):
            pkg = path.split("/")[4]
        pkg = pkg or "unknown"
        for c in chunks(text):
            k = key(c)
            if k in seen or sum(ch.isalpha() for ch in c) < 0.4 * len(c):
                continue
            seen.add(k)
            by_pkg.setdefault(pkg, []).append((kind, c))

    rows = []
    for kind, quota in QUOTA.items():
        pool = []
        for pkg in sorted(by_pkg):
            mine = [c for k, c in by_pkg[pkg] if k == kind]
            split = "heldout" if int(h(pkg)[:8], 16) % 100 < HELDOUT_PERCENT else "train"
            for c in sorted(mine, key=h)[: CHUNKS_PER_PACKAGE[kind]]:
                pool.append({"text": c, "label": "benign_context", "subtype": kind,
                             "source": f"debian/{pkg}", "split": split})
        print(f"{kind}: {len(pool)} chunks available, quota {quota}", file=sys.stderr)
        rows += sorted(pool, key=lambda r: h(r["text"]))[:quota]
    rows.sort(key=lambda r: (r["source"], h(r["text"])))
    licences = {}
    for r in rows:
        pkg = r["source"].split("/", 1)[1]
        if pkg not in licences:
            licences[pkg] = licence_of(pkg)
        r["license"] = licences[pkg]
    os.makedirs(OUT_DIR, exist_ok=True)
    body = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    # mtime 0 and no file name in the header: the same rows give the same bytes.
    with open(OUT, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", filename="", mtime=0) as f:
        f.write(body.encode("utf-8"))
    counts = {}
    for r in rows:
        counts[r["source"]] = counts.get(r["source"], 0) + 1
    with open(MANIFEST, "w", encoding="utf-8") as f:
        f.write("# package\tlicence\tchunks\tsplit  (used as training statistics only)\n")
        for src in sorted(counts):
            pkg = src.split("/", 1)[1]
            split = next(r["split"] for r in rows if r["source"] == src)
            f.write(f"{pkg}\t{licences[pkg]}\t{counts[src]}\t{split}\n")
    held = sum(r["split"] == "heldout" for r in rows)
    print(f"{len(rows)} chunks ({held} held out) from {len(counts)} packages -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
