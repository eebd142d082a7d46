"""Test helpers: tiny MIND-format splits, zips of them, a loopback HTTP server, a network guard.

Why: the real MIND and GloVe files are gigabytes behind mirrors that tests must never reach.
These helpers make small files with the same layout (so the same reader, downloader and
extractor run on them) and serve them from 127.0.0.1, so every download path is exercised
offline. Import them from a test module: `from fixtures_mind import ...` (pytest puts tests/
on sys.path because tests/ is not a package).
"""

from __future__ import annotations

import hashlib
import json
import random
import socket
import threading
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

# --------------------------------------------------------------------------------------------
# MIND-format files

# (WikidataId, Label, Type, surface form). The last one gets no row in entity_embedding.vec,
# as in real MIND where some entities named in news.tsv have no embedding.
_ENTITIES = [
    ("Q30", "United States", "G", "America"),
    ("Q1297", "Chicago", "G", "Chicago"),
    ("Q2736", "Association football", "S", "football"),
    ("Q11696", "President of the United States", "P", "president"),
    ("Q99999999", "Unembedded Thing", "O", "gadget"),
]
_CATEGORIES = {
    "sports": ["football_nfl", "basketball_nba"],
    "news": ["newsus", "newspolitics"],
    "lifestyle": ["lifestyleroyals"],
}
_WORDS = (  # noqa: SIM905  (a sentence reads better than 28 quoted words)
    "the a new old big small city team game win loses plans says after over into "
    "report market weather storm star coach vote law school food travel home"
).split()


def _entity_json(title: str) -> str:
    """Title-entity JSON as MIND writes it: one object per entity whose surface form occurs."""
    found = []
    for wikidata_id, label, kind, surface in _ENTITIES:
        at = title.find(surface)
        if at >= 0:
            found.append(
                {
                    "Label": label,
                    "Type": kind,
                    "WikidataId": wikidata_id,
                    "Confidence": 0.99,
                    "OccurrenceOffsets": [at],
                    "SurfaceForms": [surface],
                }
            )
    return json.dumps(found)


def write_mind_split(
    folder: str | Path,
    *,
    num_news: int = 8,
    num_users: int = 4,
    num_impressions: int = 6,
    labeled: bool = True,
    seed: int = 0,
    first_impression_id: int = 1,
    non_click: bool = False,
) -> Path:
    """Write a small valid MIND split (news.tsv, behaviors.tsv, entity/relation .vec) to `folder`.

    Deterministic from `seed`. News IDs are N1..N{num_news}; users U1..U{num_users}; every
    labeled impression has at least one click; the first impression has an empty history;
    some titles carry entities (their JSON has real character offsets) and one entity has no
    embedding row, as in MIND. With `labeled=False` impressions are bare news IDs, like the
    MIND-large test split. `non_click=True` also gives every impression a non-click, as
    every real MIND impression has (so each click forms a training sample). Returns the folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    news_ids = [f"N{i}" for i in range(1, num_news + 1)]

    news_lines = []
    for i, news_id in enumerate(news_ids):
        category = sorted(_CATEGORIES)[i % len(_CATEGORIES)]
        subcategory = _CATEGORIES[category][i % len(_CATEGORIES[category])]
        words = rng.sample(_WORDS, 6)
        if i % 2 == 0:  # every other title names an entity
            words.insert(rng.randrange(len(words)), _ENTITIES[i % len(_ENTITIES)][3])
        title = " ".join(words).capitalize()
        abstract = "" if i == 1 else " ".join(rng.sample(_WORDS, 10)) + "."  # one empty abstract
        url = f"https://assets.msn.com/labs/mind/{news_id}.html"
        news_lines.append(
            "\t".join(
                [news_id, category, subcategory, title, abstract, url, _entity_json(title), "[]"]
            )
        )

    behavior_lines = []
    start = datetime(2019, 11, 14, 0, 5, 0)
    for k in range(num_impressions):
        user = f"U{k % num_users + 1}"
        when = (start + timedelta(minutes=97 * k)).strftime("%m/%d/%Y %I:%M:%S %p")
        history = "" if k == 0 else " ".join(rng.sample(news_ids, rng.randint(1, 3)))
        candidates = rng.sample(news_ids, rng.randint(2, min(4, num_news)))
        if labeled:
            clicks = [1] + [int(rng.random() < 0.3) for _ in candidates[1:]]
            if non_click:
                clicks[-1] = 0
            rng.shuffle(clicks)
            shown = " ".join(f"{n}-{c}" for n, c in zip(candidates, clicks, strict=True))
        else:
            shown = " ".join(candidates)
        behavior_lines.append("\t".join([str(first_impression_id + k), user, when, history, shown]))

    entity_lines = [
        wikidata_id + "\t" + "\t".join(f"{rng.uniform(-0.1, 0.1):.6f}" for _ in range(100))
        for wikidata_id, *_ in _ENTITIES[:-1]
    ]
    relation_lines = [
        pid + "\t" + "\t".join(f"{rng.uniform(-0.1, 0.1):.6f}" for _ in range(100))
        for pid in ("P31", "P17")
    ]
    for name, lines in [
        ("news.tsv", news_lines),
        ("behaviors.tsv", behavior_lines),
        ("entity_embedding.vec", entity_lines),
        ("relation_embedding.vec", relation_lines),
    ]:
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def write_split_after_train(folder: str | Path, position: int, **sizes: int) -> Path:
    """A split that follows train (`position` 1: dev, 2: test), as `write_mind_split` writes
    it: seeded by its position, impression IDs from 1000 * position + 1, so that none repeats
    train's (which start at 1)."""
    return write_mind_split(
        folder, seed=position + 1, first_impression_id=1000 * position + 1, **sizes
    )


def make_mind_zip(
    folder_or_files: str | Path | Mapping[str, str | bytes],
    zip_path: str | Path,
    *,
    top_folder: str | None = None,
) -> Path:
    """Zip a folder's files (at the zip's top level, as MIND ships them) or a {name: content} map.

    The mapping form writes member names verbatim, so tests can craft hostile zips (`../x`,
    absolute names). `top_folder` nests everything under one folder, the other layout the
    extractor must tolerate. Returns the zip path.
    """
    zip_path = Path(zip_path)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(folder_or_files, Mapping):
        members = dict(folder_or_files)
    else:
        folder = Path(folder_or_files)
        members = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(f"{top_folder}/{name}" if top_folder else name, content)
    return zip_path


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file, to compare a downloaded file with its original."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------
# Loopback HTTP server


@dataclass
class LoopbackServer:
    """State of a running loopback server; tests change the knobs between requests."""

    root: Path
    url: str = ""
    # (method, path, Range header or None) of every request, in order.
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    # path -> N: the next GET of that path announces the full length but sends only N bytes
    # and hangs up (one-shot), to simulate a dropped connection.
    break_after: dict[str, int] = field(default_factory=dict)
    # Answer 200 with the whole file even when a Range is asked (servers that cannot resume).
    ignore_range: bool = False
    # Headers a Hugging Face endpoint sends, so huggingface_hub accepts us as its endpoint.
    hub_headers: bool = True


class _Handler(BaseHTTPRequestHandler):
    """Serves files under the server's root with Range support and the knobs above."""

    server_version = "newsrec-test/1"
    protocol_version = "HTTP/1.1"
    timeout = 10  # a stuck client cannot hold a handler thread for long

    @property
    def state(self) -> LoopbackServer:
        return self.server.state  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        range_header = self.headers.get("Range")
        self.state.requests.append((self.command, path, range_header))
        file = (self.state.root / path.lstrip("/")).resolve()
        if not file.is_relative_to(self.state.root.resolve()) or not file.is_file():
            self._send_empty(404)
            return
        data = file.read_bytes()
        size = len(data)
        start, status = 0, 200
        if range_header and not self.state.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= size:
                self._send_empty(416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        payload = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        if self.state.hub_headers:
            self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
            self.send_header("X-Repo-Commit", "0" * 40)
        self.end_headers()
        if not body:
            return
        cut = self.state.break_after.pop(path, None) if self.command == "GET" else None
        if cut is not None:
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(payload)

    def _send_empty(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


@contextmanager
def serve_folder(root: str | Path, *, max_seconds: float = 60) -> Iterator[LoopbackServer]:
    """Serve `root` over HTTP on 127.0.0.1 (a free port) for the duration of the `with` block.

    Bounded: the server shuts itself down after `max_seconds` even if a test hangs, and on
    leaving the block. Files are read per request, so tests may add or change files meanwhile.
    """
    state = LoopbackServer(root=Path(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = state  # type: ignore[attr-defined]
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    watchdog = threading.Timer(max_seconds, httpd.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        yield state
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Network guard

_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any connection or DNS lookup to a non-loopback host fail loudly during a test.

    Why: a default mirror list slipping into a test would otherwise try the real internet,
    hang on a timeout here, and silently download gigabytes elsewhere.
    """
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def host_of(address: object) -> str | None:
        if isinstance(address, tuple) and address:
            return str(address[0])
        return None  # AF_UNIX paths and the like are local

    def guarded_connect(sock: socket.socket, address: object) -> None:
        host = host_of(address)
        if host is not None and host not in _LOCAL_HOSTS:
            raise OSError(f"test tried to reach {host}: tests must stay offline")
        return real_connect(sock, address)

    def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and str(name) not in _LOCAL_HOSTS:
            raise OSError(f"test tried to resolve {name}: tests must stay offline")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
