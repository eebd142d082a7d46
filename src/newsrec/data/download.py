"""Fetch MIND (and GloVe) zips from a list of mirrors, check them, and unpack them safely.

Why this much care: the zips are large (MIND-large train is about half a gigabyte, GloVe
840B two), mirrors die or answer with an HTML error page, connections drop, and a
half-extracted folder that looks complete would silently poison every later run. So:

- downloads go to `<name>.part` and resume with an HTTP Range request;
- every zip is checked (CRCs and required members) before it is trusted (`newsrec.data.zips`);
- extraction refuses members that would land outside the target, and is all-or-nothing:
  the finished folder appears, by one rename, only when every file is written.

Mirrors are URL templates holding `{name}`. `hf://[datasets/|models/]<owner>/<repo>/{name}`
is a file of a Hugging Face repository, fetched with `huggingface_hub.hf_hub_download`
(a dataset repository unless the `models/` prefix says otherwise).
"""

from __future__ import annotations

import logging
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

from newsrec.data.hub import download_hf as _download_hf
from newsrec.data.hub import split_hf as _split_hf  # noqa: F401  (tested here)
from newsrec.data.info import SplitPaths
from newsrec.data.source import DataSource
from newsrec.data.zips import (  # noqa: F401  (CorruptZipError, UnsafeZipError: part of this API)
    MIND_MEMBERS,
    CorruptZipError,
    UnsafeZipError,
    check_zip,
    safe_extract,
)
from newsrec.utils.progress import progress_bar

log = logging.getLogger(__name__)


DEFAULT_MIND_MIRRORS = (
    "hf://yjw1029/MIND/{name}",
    "https://mind201910small.blob.core.windows.net/release/{name}",
    # The only one that still has MINDdemo_*.zip.
    "https://recodatasets.z20.web.core.windows.net/newsrec/{name}",
)

_VARIANTS = {
    # variant: (zip/folder prefix, splits)
    "demo": ("MINDdemo", ("train", "dev")),
    "small": ("MINDsmall", ("train", "dev")),
    "large": ("MINDlarge", ("train", "dev", "test")),
}

_USER_AGENT = "newsrec-downloader/0.1 (+urllib)"


class DownloadError(RuntimeError):
    """A file could not be fetched: network, HTTP status, or a transfer cut short."""


# --------------------------------------------------------------------------------------------
# One file over HTTP(S)


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from `bytes a-b/total` or `bytes */total`; None where unknown."""
    if not header:
        return None, None
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header)
    if not match:
        return None, None
    start = int(match.group(1)) if match.group(1) is not None else None
    total = int(match.group(2)) if match.group(2) != "*" else None
    return start, total


def download_file(
    url: str,
    dest: str | Path,
    *,
    progress: bool = True,
    chunk_size: int = 1 << 20,
    timeout: float = 30,
) -> Path:
    """Download `url` to `dest`, resuming an earlier partial download; return `dest`.

    Bytes go to `dest` + ".part" and the file is renamed to `dest` only once complete, so
    `dest` existing means the whole file arrived. An existing .part is resumed with a
    `Range: bytes=N-` request: a 206 answer appends, a 200 answer (a server that cannot
    resume) restarts from zero, a 416 answer means the .part already holds the whole file.
    A transfer shorter than the announced size raises DownloadError and keeps the .part,
    so running again resumes. An existing `dest` is overwritten.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")

    # A second pass only happens when the .part cannot be a prefix of the file (see below).
    for _ in range(2):
        offset = part.stat().st_size if part.exists() else 0
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as err:  # 416: the range asked for is not in the file
            if not _part_is_whole_file(err, offset, part):
                continue
            part.replace(dest)
            return dest
        with response:
            plan = _write_plan(response, url, part, offset)
            if plan is None:
                continue
            mode, offset, total, length = plan
            received = _stream(
                response, url, part, mode, offset, total, length, progress, chunk_size
            )
        _check_complete(url, part, received, length, total)
        part.replace(dest)
        return dest
    raise DownloadError(f"{url}: could not resume into {part}; delete it and run again")


def _open(url: str, offset: int, timeout: float):
    """GET `url`, from byte `offset` on when resuming. A 416 answer to a resume is raised as
    the HTTPError itself (the caller tells a complete .part from a wrong one); every other
    failure is a DownloadError."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:
            raise
        raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError, HTTPException) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"{url}: {reason}") from err


def _part_is_whole_file(err: urllib.error.HTTPError, offset: int, part: Path) -> bool:
    """After a 416 to `Range: bytes=<offset>-`: whether the .part already holds the whole
    file. If not, it is longer than the file, so not a prefix of it: it is deleted."""
    _, total = _content_range(err.headers.get("Content-Range"))
    if total is None or total == offset:
        log.info("%s: already complete (%d bytes)", part.name.removesuffix(".part"), offset)
        return True
    log.warning("%s: partial file larger than the remote file; restarting", part)
    part.unlink()
    return False


def _write_plan(
    response, url: str, part: Path, offset: int
) -> tuple[str, int, int | None, int | None] | None:
    """How this response's body goes into the .part: (file mode, first byte, size of the
    whole file, length of this body), sizes None where the server does not say. None when
    the server resumed at another byte than asked: the .part is deleted, to start afresh."""
    status = response.status or 200  # file:// answers carry no status
    length_header = response.headers.get("Content-Length")
    length = int(length_header) if length_header and length_header.isdigit() else None
    if offset and status == 206:
        start, total = _content_range(response.headers.get("Content-Range"))
        if start is not None and start != offset:
            log.warning("%s: server resumed at byte %s, not %d; restarting", url, start, offset)
            part.unlink()
            return None
        if total is None and length is not None:
            total = offset + length
        return "ab", offset, total, length
    if offset:
        log.info("%s: server ignored the Range request; downloading from zero", url)
    return "wb", 0, length, length


def _check_complete(
    url: str, part: Path, received: int, length: int | None, total: int | None
) -> None:
    """Refuse a transfer cut short; the .part is kept so that the next run resumes it."""
    if length is not None and received != length:
        raise DownloadError(
            f"{url}: the server announced {length} bytes but sent {received}. "
            f"The partial file {part} is kept: run again to resume."
        )
    size = part.stat().st_size
    if total is not None and size != total:
        raise DownloadError(
            f"{url}: {part} holds {size} bytes, the file has {total}. Run again to resume, "
            f"or delete {part} to start afresh."
        )


def _stream(
    response: BinaryIO,
    url: str,
    part: Path,
    mode: str,
    offset: int,
    total: int | None,
    length: int | None,
    progress: bool,
    chunk_size: int,
) -> int:
    """Copy the response body into `part`; return how many bytes this response delivered."""
    received = 0
    with open(part, mode) as out, progress_bar(progress, transfer=True) as bar:
        task = bar.add_task(part.name.removesuffix(".part"), total=total, completed=offset)
        try:
            while True:
                chunk = response.read(chunk_size)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(task, advance=len(chunk))
        except (OSError, HTTPException) as err:
            # The bytes written so far stay in the .part for the next attempt to resume.
            out.flush()
            expected = f" of {length}" if length is not None else ""
            raise DownloadError(
                f"{url}: connection lost after {received}{expected} bytes ({err}). "
                f"The partial file {part} is kept: run again to resume."
            ) from err
    return received


# --------------------------------------------------------------------------------------------
# Mirrors


def _mirror_source(template: str, name: str) -> str:
    """The URL (or hf:// address) of `name` on a mirror; a template without {name} gets it appended."""
    if "{name}" in template:
        return template.replace("{name}", name)
    return template.rstrip("/") + "/" + name


def fetch_zip(
    name: str,
    mirrors: Sequence[str],
    cache_dir: str | Path,
    *,
    required: Sequence[str] = MIND_MEMBERS,
    progress: bool = True,
) -> Path:
    """Return `cache_dir/name`, a checked zip, downloading it from the first mirror that works.

    A zip already in the cache is checked and reused (a corrupt one raises CorruptZipError
    saying to delete it: it may be a file the user put there, so it is not deleted here). A
    freshly downloaded zip that fails the check (a mirror serving an error page, say) is
    deleted and the next mirror tried. Every mirror's failure is logged, and if all fail the
    error lists each mirror with its reason. `required` names the members the zip must hold
    (at its top level or inside a single top-level folder).
    """
    cache_dir = Path(cache_dir)
    dest = cache_dir / name
    if dest.exists():
        check_zip(dest, required)
        return dest
    if not mirrors:
        raise ValueError(f"no mirror given to download {name} from")
    cache_dir.mkdir(parents=True, exist_ok=True)

    failures: list[tuple[str, str]] = []
    for template in mirrors:
        source = _mirror_source(template, name)
        try:
            if source.startswith("hf://"):
                _download_hf(source, dest)
            else:
                download_file(source, dest, progress=progress)
            check_zip(dest, required)
            log.info("%s: downloaded from %s", name, source)
            if failures:
                listing = "; ".join(f"{s}: {reason}" for s, reason in failures)
                log.warning("%s: mirrors that failed before %s: %s", name, source, listing)
            return dest
        except CorruptZipError as err:
            dest.unlink(missing_ok=True)
            failures.append((source, f"served a bad zip: {err}"))
        except Exception as err:  # any failure of one mirror means: try the next one
            failures.append((source, f"{type(err).__name__}: {err}"))
        # The reason is said once: in the error below if every mirror fails, else in the
        # warning of the mirror that worked.
        log.info("%s: mirror %s failed; trying the next one", name, source)

    listing = "\n".join(f"  - {source}: {reason}" for source, reason in failures)
    raise DownloadError(
        f"could not download {name} from any mirror:\n{listing}\n"
        f"Check the network, add a working mirror to the config, or download {name} by hand "
        f"into {cache_dir}/."
    )


# --------------------------------------------------------------------------------------------
# MIND


def _require_split_files(folder: Path, hint: str) -> Path:
    missing = [m for m in MIND_MEMBERS if not (folder / m).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}. {hint}")
    return folder


class MindSource(DataSource):
    """Where the MIND files come from: an unzipped copy on disk, or zips fetched from mirrors.

    `variant` is demo, small or large (zips `MINDdemo_train.zip`, `MINDsmall_dev.zip`,
    `MINDlarge_test.zip`, ...; large adds the unlabeled test split). With `data_dir`, MIND is
    already unzipped there (`MINDsmall_train/`, `MINDsmall_dev/` side by side) and nothing is
    downloaded. Otherwise `prepare(root)` downloads missing zips into root/mind/zips/ and
    extracts each to root/mind/MIND<variant>_<split>/; finished folders are reused.
    """

    def __init__(
        self,
        variant: str = "small",
        mirrors: Sequence[str] | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        if variant not in _VARIANTS:
            raise ValueError(
                f"unknown MIND variant {variant!r}; expected one of {sorted(_VARIANTS)}"
            )
        self.variant = variant
        self.mirrors = list(mirrors) if mirrors is not None else list(DEFAULT_MIND_MIRRORS)
        self.data_dir = Path(data_dir).expanduser() if data_dir else None

    @property
    def splits(self) -> tuple[str, ...]:
        return _VARIANTS[self.variant][1]

    def __repr__(self) -> str:
        return f"MindSource(variant={self.variant!r})"

    def folder_name(self, split: str) -> str:
        return f"{_VARIANTS[self.variant][0]}_{split}"

    def zip_name(self, split: str) -> str:
        return self.folder_name(split) + ".zip"

    def prepare(self, root: str | Path, progress: bool = True) -> SplitPaths:
        """Make sure every split is on disk, unzipped; return where (no truth file in MIND)."""
        if self.data_dir is not None:
            folders = {split: self._given_folder(split) for split in self.splits}
        else:
            folders = {
                split: self._fetched_folder(Path(root) / "mind", split, progress)
                for split in self.splits
            }
        return SplitPaths(
            train=folders["train"], dev=folders["dev"], test=folders.get("test"), has_truth=False
        )

    def _given_folder(self, split: str) -> Path:
        assert self.data_dir is not None
        folder = self.data_dir / self.folder_name(split)
        expected = ", ".join(self.folder_name(s) + "/" for s in self.splits)
        if not folder.is_dir():
            raise FileNotFoundError(
                f"MIND folder {folder} not found: data_dir={self.data_dir} should hold {expected} "
                f"side by side (the unzipped {self.zip_name(split)} and its siblings), "
                "or set data_dir to null to download MIND."
            )
        return _require_split_files(folder, f"It should be the unzipped {self.zip_name(split)}.")

    def _fetched_folder(self, base: Path, split: str, progress: bool) -> Path:
        target = base / self.folder_name(split)
        if not target.exists():
            zip_path = fetch_zip(
                self.zip_name(split), self.mirrors, base / "zips", progress=progress
            )
            log.info("extracting %s to %s", zip_path.name, target)
            safe_extract(zip_path, target)
        return _require_split_files(target, "Delete that folder and run again to re-extract it.")
