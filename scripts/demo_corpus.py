"""The demo model's corpus: Jane Austen's six novels from the Debian package r-cran-janeaustenr.

The package (1.0.0-1; janeaustenr by Julia Silge, MIT) ships the full texts as R data in a lazy-load
database (`Rdata.rdb`). This module fetches the .deb with `apt-get download` (no root, nothing
installed) unless given one or the package is installed, reads the R data with the small reader below
(R is not needed), cleans the text (title pages, chapter headings, editorial notes, hard wraps,
_italics_ marks) and splits it into chapters: every chapter is a document, every 25th is held out.
The novels are in the public domain (Austen died in 1817; Project Gutenberg transcriptions with
Gutenberg's header and licence already removed by the package).
"""

import hashlib
import io
import re
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

CACHE = Path.home() / ".cache" / "gpt2np-train"
DEB_PACKAGE = "r-cran-janeaustenr"
DEB_VERSION = "1.0.0-1"
INSTALLED_RDB = Path("/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")
RDB_IN_DEB = "./usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
BOOK_TITLES = {  # first line of each text in the package -> title
    "SENSE AND SENSIBILITY": "Sense and Sensibility",
    "PRIDE AND PREJUDICE": "Pride and Prejudice",
    "MANSFIELD PARK": "Mansfield Park",
    "EMMA": "Emma",
    "NORTHANGER ABBEY": "Northanger Abbey",
    "PERSUASION": "Persuasion",
}
HELDOUT_EVERY = 25          # every 25th chapter is held out


def log(msg=""):
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# 1. Corpus
# ---------------------------------------------------------------------------------------------

def find_corpus_deb(corpus_deb):
    """Path of the r-cran-janeaustenr .deb: given, cached, or fetched with `apt-get download`."""
    if corpus_deb:
        return Path(corpus_deb)
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = sorted(CACHE.glob(f"{DEB_PACKAGE}_*.deb"))
    if cached:
        return cached[-1]
    for spec in (f"{DEB_PACKAGE}={DEB_VERSION}", DEB_PACKAGE):
        log(f"corpus: apt-get download {spec}  (into {CACHE})")
        r = subprocess.run(["apt-get", "download", spec], cwd=CACHE, capture_output=True, text=True)
        cached = sorted(CACHE.glob(f"{DEB_PACKAGE}_*.deb"))
        if r.returncode == 0 and cached:
            return cached[-1]
    sys.exit(f"Could not fetch the corpus package {DEB_PACKAGE}: {r.stderr.strip()}\n"
             f"Run `apt-get update && apt-get download {DEB_PACKAGE}` (or `apt-get install "
             f"{DEB_PACKAGE}`), then pass --corpus-deb FILE.deb.")


def read_deb(deb_path):
    """(control fields, Rdata.rdb bytes) from a .deb: an `ar` archive holding tar members."""
    data = Path(deb_path).read_bytes()
    assert data[:8] == b"!<arch>\n", f"{deb_path} is not a .deb"
    members, pos = {}, 8
    while pos + 60 <= len(data):
        name = data[pos:pos + 16].decode().strip().rstrip("/")
        size = int(data[pos + 48:pos + 58])
        members[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)

    def tar_member(prefix, wanted):
        (name,) = [n for n in members if n.startswith(prefix)]
        with tarfile.open(fileobj=io.BytesIO(members[name])) as tf:
            return tf.extractfile(wanted).read()

    control = tar_member("control.tar", "./control").decode()
    fields = dict(re.findall(r"^([\w-]+): (.*)$", control, re.M))
    return fields, tar_member("data.tar", RDB_IN_DEB)


def read_r_character_vectors(rdb):
    """Character vectors stored in an R lazy-load database (`Rdata.rdb`).

    The file is a run of records: a 4-byte big-endian length, then a zlib stream holding one
    object in R's XDR serialization. Each novel is a STRSXP (type 16): a length, then per line a
    CHARSXP (type 9): flags, byte length (-1 = NA) and the bytes."""
    vectors, pos = [], 0
    while pos < len(rdb):
        z = zlib.decompressobj()
        raw = z.decompress(rdb[pos + 4:])
        pos = len(rdb) - len(z.unused_data)
        assert raw[:2] == b"X\n", "not an R XDR serialization"
        i = 14                                    # 'X\n', version, R version, min R version
        if struct.unpack(">i", raw[2:6])[0] == 3:  # version 3 adds the native encoding name
            i += 4 + struct.unpack(">i", raw[i:i + 4])[0]
        flags, n = struct.unpack(">ii", raw[i:i + 8])
        i += 8
        assert flags & 0xFF == 16, "expected a character vector"
        lines = []
        for _ in range(n):
            cflags, length = struct.unpack(">ii", raw[i:i + 8])
            i += 8
            encoding = "latin-1" if cflags & (1 << 14) else "utf-8"
            lines.append("" if length < 0 else raw[i:i + length].decode(encoding))
            i += max(length, 0)
        vectors.append(lines)
    return vectors


def load_corpus(corpus_deb):
    """{title: list of lines}, and a description of where the text came from."""
    if not corpus_deb and INSTALLED_RDB.exists():
        rdb, version, source = INSTALLED_RDB.read_bytes(), installed_version(), str(INSTALLED_RDB)
    else:
        deb = find_corpus_deb(corpus_deb)
        fields, rdb = read_deb(deb)
        version, source = fields.get("Version", "?"), deb.name
    books = {}
    for lines in read_r_character_vectors(rdb):
        books[BOOK_TITLES[lines[0].strip().upper()]] = lines
    assert sorted(books) == sorted(BOOK_TITLES.values()), sorted(books)
    info = {
        "name": "Jane Austen's six completed novels",
        "books": list(BOOK_TITLES.values()),
        "package": f"Debian {DEB_PACKAGE}",
        "package_version": version,
        "package_source": source,
        "package_license": "MIT (janeaustenr by Julia Silge, CRAN 1.0.0; Debian packaging MIT)",
        "text_license": "public domain (Jane Austen, 1775-1817; Project Gutenberg transcriptions, "
                        "Gutenberg header and licence already removed by the package)",
        "rdata_sha256": hashlib.sha256(rdb).hexdigest(),
        "how_to_get": f"apt-get download {DEB_PACKAGE}  (or apt-get install {DEB_PACKAGE})",
    }
    return books, info


def installed_version():
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", DEB_PACKAGE],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


# ---------------------------------------------------------------------------------------------
# 2. Cleaning and the train / held-out split
# ---------------------------------------------------------------------------------------------

CHAPTER = re.compile(r"^\s*chapter\s+[0-9ivxlc]+\.?\s*$", re.I)
DROP_LINE = re.compile(r"^\s*(volume\s+[ivx0-9]+|the end|finis)\.?\s*$", re.I)
NOTE = re.compile(r"\[[^\]]*\]", re.S)   # editorial notes: [At this point in the first edition ...]


def chapters(lines):
    """Lines of one novel -> list of chapter texts (front matter and end matter dropped)."""
    out, current = [], None
    for line in lines:
        if line.strip() in ("A NOTE ON THE TEXT",):    # Northanger Abbey's editorial afterword
            break
        if CHAPTER.match(line):
            if current is not None:
                out.append(current)
            current = []
        elif current is not None and not DROP_LINE.match(line):
            current.append(line)
    out.append(current)
    return [clean_text(c) for c in out]


def clean_text(lines):
    """Unwrap hard-wrapped lines into paragraphs (verse keeps its line breaks)."""
    text = NOTE.sub("", "\n".join(lines))
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        rows = [r for r in block.split("\n") if r.strip()]
        if not rows:
            continue
        verse = all(r.startswith("  ") for r in rows)
        para = ("\n" if verse else " ").join(r.strip() for r in rows)
        para = re.sub(r"_([^_]+)_", r"\1", para).replace("_", "")
        paragraphs.append(re.sub(r"[ \t]+", " ", para))
    return "\n\n".join(paragraphs)


def split_documents(books):
    """All chapters as (title, text); every HELDOUT_EVERY-th chapter (counting across the novels,
    starting with the 13th) is held out."""
    docs = [(title, ch) for title, lines in books.items() for ch in chapters(lines) if ch]
    held = [d for k, d in enumerate(docs) if k % HELDOUT_EVERY == HELDOUT_EVERY // 2]
    train = [d for k, d in enumerate(docs) if k % HELDOUT_EVERY != HELDOUT_EVERY // 2]
    return train, held
