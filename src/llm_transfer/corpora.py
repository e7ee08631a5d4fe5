"""Unlabelled and cross-domain text: Wikipedia (source domain), IMDb reviews and product reviews (target domains).

Each corpus is a file under the shared data folder (``../shared/data`` next to the checkout, or the folder named by
``LLM_TRANSFER_CORPORA``) whose SHA-256 is checked before a line is used, read line by line (gzip streamed), so a
caller holds only what it keeps. Online users without that folder get the hub copy each corpus names.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .data import DataError
from .settings import HUB_DATA, _search_roots, display_path

ENV_CORPORA = "LLM_TRANSFER_CORPORA"
_SHARED_DATA = Path("shared") / "data"
PRODUCTS_SOURCE = "Bing Liu's opinion-mining data sets: https://www.cs.uic.edu/~liub/FBS/sentiment-analysis.html"


@dataclass(frozen=True)
class Corpus:
    """One text file of the shared data folder: where it lies, what it holds, its hash, its hub fallback."""

    name: str
    path: str  # relative to the shared data folder
    sha256: str  # of the uncompressed text
    unit: str  # what one record is: "article" (paragraph lines, blank line between) or "line"
    about: str
    hub: tuple[str, str | None, str, str] | None  # (dataset id, config, split, text column); None: no hub copy

    def describe(self) -> str:
        """One line: what the corpus is and where its hub copy lives."""
        if self.hub is None:
            return f"{self.name}: {self.about}; no hub copy ({PRODUCTS_SOURCE})"
        hub_id, config, split, _ = self.hub
        return f"{self.name}: {self.about}; hub fallback {hub_id}" + (f" ({config})" if config else "") + f" {split}"


CORPORA = {c.name: c for c in [
    Corpus("wikipedia", "corpora/wikipedia_en_2015.txt.gz",
           "352aef5773afd2d5121cdb13905f2feecc8d5775f904ba0114f978b8c21f2476", "article",
           "English Wikipedia 2015, 7,689 articles, 16.2 M words (general domain, CC BY-SA 3.0)",
           ("Salesforce/wikitext", "wikitext-103-raw-v1", "train", "text")),
    Corpus("imdb", "corpora/imdb_unlabeled.txt.gz",
           "f1887d7b289c2f7f84f823f07caebcca3f0acd838868b3725a63aa8a869fe988", "line",
           "49,790 unlabelled IMDb reviews, 11.5 M words (movie-review domain; Maas et al. 2011)",
           ("stanfordnlp/imdb", None, "unsupervised", "text")),
    Corpus("product_sentences", "products/reviews_unlabeled.txt",
           "d05300be82873c07df4dc78e900a77bb9aaee56b2e8a5301906da17d13ecd1cd", "line",
           "4,388 unlabelled Amazon review sentences of 14 products (Hu & Liu 2004), tokenized like SST",
           None),
]}

# Labelled product-review files (read by products.py-style callers through labelled_rows): name -> (path, sha256)
LABELLED = {
    "product_reviews": ("products/reviews.tsv", "4bcaecbde42bfed444f6f93f2594a60f0c744830a4b92538b2dad219c4dea206",
                        ["product", "sentence", "label"]),
    "pros_cons": ("products/pros_cons.tsv", "279eb4dbf632f78025e192236aa6d9980730133c25275153a6d024b6227c5aa2",
                  ["sentence", "label"]),
}

_VERIFIED: dict[tuple[str, int, int], str] = {}


def find_shared_data() -> Path | None:
    """The shared data folder: $LLM_TRANSFER_CORPORA, else ../shared/data next to the checkout; None if neither."""
    env = os.environ.get(ENV_CORPORA)
    if env and env != HUB_DATA:
        return Path(env).expanduser()
    if env == HUB_DATA:
        return None
    for r in _search_roots():
        if (r / _SHARED_DATA / "corpora").is_dir():
            return r / _SHARED_DATA
    return None


def _how_to_get(rel: str) -> str:
    """The fix for a missing corpus file (the product files have no hub copy: where they come from instead)."""
    where = (f"the product files have no hub copy: download them from {PRODUCTS_SOURCE}" if rel.startswith("products/")
             else f"online, {ENV_CORPORA}=hub reads the hub copy instead")
    return (f"Put the shared data folder next to the checkout (../shared/data/{rel}) or set {ENV_CORPORA} to a folder "
            f"that holds {rel}; {where}.")


def _open_text(path: Path) -> io.TextIOBase:
    """A text stream over a plain or gzip file (UTF-8)."""
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def text_sha256(path: Path) -> str:
    """SHA-256 of the file's uncompressed bytes, remembered per (path, mtime, size)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _VERIFIED:
        h = hashlib.sha256()
        try:
            with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as fh:
                while block := fh.read(1 << 20):
                    h.update(block)
        except (OSError, EOFError) as e:  # a truncated gzip stream
            raise DataError(f"{display_path(path)}: cannot be read to its end ({type(e).__name__}: {e}); the file "
                            "is damaged or truncated: copy it again.") from None
        _VERIFIED[key] = h.hexdigest()
    return _VERIFIED[key]


def verified_path(rel: str, sha256: str, root: str | os.PathLike | None = None) -> Path:
    """The file rel under the shared data folder, its SHA-256 checked; DataError naming the fix otherwise."""
    base = Path(root) if root is not None else find_shared_data()
    if base is None:
        raise DataError(f"no shared data folder for {rel}. {_how_to_get(rel)}")
    path = base / rel
    if not path.is_file():
        raise DataError(f"{display_path(path)}: file not found. {_how_to_get(rel)}")
    got = text_sha256(path)
    if got != sha256:
        raise DataError(f"{display_path(path)}: SHA-256 of its text is {got[:12]}…, expected {sha256[:12]}… (the "
                        "file was altered or truncated); copy it again from the shared data folder.")
    return path


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline) of a verified text file; DataError on bytes that are not UTF-8."""
    with _open_text(path) as fh:
        lineno = 0
        try:
            for lineno, line in enumerate(fh, start=1):
                yield lineno, line.rstrip("\r\n").lstrip("\ufeff") if lineno == 1 else line.rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise DataError(f"{display_path(path)}, after line {lineno}: bytes that are not UTF-8 ({e.reason}); "
                            "re-save the file as UTF-8.") from None


def iter_documents(name: str, root: str | os.PathLike | None = None, limit: int | None = None) -> Iterator[str]:
    """The corpus's records one at a time (Wikipedia: an article's paragraphs joined by newlines; else a line)."""
    if name not in CORPORA:
        raise ValueError(f"corpus {name!r} is not one of {sorted(CORPORA)}")
    corpus = CORPORA[name]
    if root is None and find_shared_data() is None:
        yield from _hub_documents(corpus, limit)
        return
    path = verified_path(corpus.path, corpus.sha256, root)
    n, paragraphs = 0, []
    for _, line in iter_lines(path):
        if limit is not None and n >= limit:
            return
        if corpus.unit == "line":
            if line.strip():
                n += 1
                yield line
        elif line.strip():
            paragraphs.append(line)
        elif line == "" and paragraphs:  # an empty line ends an article (a line of spaces does not)
            n += 1
            yield "\n".join(paragraphs)
            paragraphs = []
    if paragraphs and (limit is None or n < limit):
        yield "\n".join(paragraphs)


def _hub_documents(corpus: Corpus, limit: int | None) -> Iterator[str]:
    """The corpus's hub copy, streamed (needs internet); WikiText's ' = Title = ' lines start a new article."""
    import datasets

    if corpus.hub is None:
        raise DataError(f"{corpus.name} has no hub copy. {_how_to_get(corpus.path)}")
    hub_id, config, split, column = corpus.hub
    try:
        stream = datasets.load_dataset(hub_id, config, split=split, streaming=True)
    except Exception as e:  # connection errors come in many types across library versions
        raise DataError(f"could not stream {hub_id} from the hub ({type(e).__name__}: {e}). "
                        f"{_how_to_get(corpus.path)}") from e
    n, paragraphs = 0, []
    for row in stream:
        text = (row[column] or "").strip()
        if corpus.unit == "line":
            if text:
                n += 1
                yield text
        elif text.startswith("= ") and not text.startswith("= = ") and paragraphs:
            n += 1
            yield "\n".join(paragraphs)
            paragraphs = [text.strip("= ").strip()]
        elif text:
            paragraphs.append(text)
        if limit is not None and n >= limit:
            return
    if paragraphs and (limit is None or n < limit):
        yield "\n".join(paragraphs)


def labelled_rows(name: str, root: str | os.PathLike | None = None) -> list[dict]:
    """The rows of a labelled product-review TSV (checked line by line): dicts with its columns, label as int."""
    if name not in LABELLED:
        raise ValueError(f"labelled file {name!r} is not one of {sorted(LABELLED)}")
    rel, sha, header = LABELLED[name]
    path = verified_path(rel, sha, root)
    rows = []
    for lineno, line in iter_lines(path):
        cols = line.split("\t")
        if lineno == 1:
            if cols != header:
                raise DataError(f"{display_path(path)}, line 1: header {line!r}, expected {chr(9).join(header)!r}.")
            continue
        if len(cols) != len(header):
            raise DataError(f"{display_path(path)}, line {lineno}: {len(cols)} tab-separated columns, expected "
                            f"{len(header)} ({', '.join(header)}); fix that line.")
        row = dict(zip(header, cols, strict=True))
        if row["label"] not in ("0", "1"):
            raise DataError(f"{display_path(path)}, line {lineno}: label {row['label']!r} is not 0 or 1.")
        if not row["sentence"].strip():
            raise DataError(f"{display_path(path)}, line {lineno}: empty sentence; fix or remove that line.")
        row["label"] = int(row["label"])
        rows.append(row)
    return rows
