"""Checking and unpacking zips: every member verified, nothing written outside the target,
and the target folder appearing only once it is complete (see `newsrec.data.download`)."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

MIND_MEMBERS = ("behaviors.tsv", "news.tsv")


class CorruptZipError(RuntimeError):
    """A zip on disk is unreadable, fails its CRC check, or lacks a member it must hold."""


class UnsafeZipError(ValueError):
    """A zip member would be written outside the extraction folder (path traversal, symlink)."""


def _top_folder(names: Sequence[str]) -> str:
    """'X/' when every member lives under one top-level folder X, else ''.

    macOS's `__MACOSX/` resource-fork folder is ignored: it is extracted into the temporary
    folder and deleted with it.
    """
    cleaned = [n.replace("\\", "/").lstrip("/") for n in names]
    cleaned = [n for n in cleaned if n and not n.startswith("__MACOSX/")]
    tops = {n.split("/", 1)[0] for n in cleaned}
    if len(tops) != 1:
        return ""
    top = next(iter(tops)) + "/"
    return top if all(n.startswith(top) for n in cleaned) else ""


def _unreadable(path: Path, err: NotImplementedError) -> CorruptZipError:
    # Deflate64 (some Windows tools) and friends: deleting and downloading again won't help.
    return CorruptZipError(
        f"{path} uses a compression method Python's zipfile cannot read ({err}). Unzip it with "
        "another tool (unzip, 7z) and point the data source's data_dir at the unzipped folders."
    )


def _corrupt(path: Path, why: str) -> CorruptZipError:
    return CorruptZipError(
        f"{path} is not a usable zip: {why}. Delete it and run again to download it afresh."
    )


def check_zip(path: str | Path, required: Sequence[str] = MIND_MEMBERS) -> None:
    """Raise CorruptZipError unless `path` is a readable zip holding every `required` member.

    Every member's CRC is verified once (`ZipFile.testzip`, which reads the whole archive);
    a `<zip>.verified` stamp (size and mtime) next to the zip skips that on later runs, since
    re-reading a 2 GB GloVe zip on every start would cost a minute.
    """
    path = Path(path)
    stamp_file = path.with_name(path.name + ".verified")
    try:
        stat = path.stat()
        stamp = f"{stat.st_size} {stat.st_mtime_ns}"
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            prefix = _top_folder(names)
            present = set(names)
            missing = [m for m in required if m not in present and prefix + m not in present]
            if missing:
                raise _corrupt(path, f"it lacks {', '.join(missing)} (wrong file?)")
            if stamp_file.exists() and stamp_file.read_text().strip() == stamp:
                return
            bad = zf.testzip()
            if bad is not None:
                raise _corrupt(path, f"member {bad} fails its CRC check")
    except CorruptZipError:
        raise
    except NotImplementedError as err:
        raise _unreadable(path, err) from err
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise _corrupt(path, str(err) or type(err).__name__) from err
    stamp_file.write_text(stamp)


def _check_member(info: zipfile.ZipInfo, zip_path: Path, base: str) -> None:
    """Refuse a member whose path is absolute, climbs out with '..', or is a symlink."""
    name = info.filename.replace("\\", "/")
    mode = info.external_attr >> 16
    if (mode & 0o170000) == 0o120000:
        raise UnsafeZipError(
            f"{zip_path}: member {info.filename!r} is a symlink; refusing to extract"
        )
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise UnsafeZipError(f"{zip_path}: member {info.filename!r} has an absolute path")
    resolved = posixpath.normpath(posixpath.join(base, name))
    if ".." in name.split("/") or not (resolved == base or resolved.startswith(base + "/")):
        raise UnsafeZipError(
            f"{zip_path}: member {info.filename!r} would be written outside the target folder"
        )


def safe_extract(zip_path: str | Path, target: str | Path) -> Path:
    """Extract `zip_path` into the new folder `target`, all or nothing; return `target`.

    Every member is checked before anything is written (UnsafeZipError for `../`, absolute
    names, symlinks). Files go to a hidden temporary sibling of `target`, which is renamed
    to `target` once complete, so `target` never exists half-written; on any error the
    temporary folder is removed. A zip whose members all sit in one top-level folder (some
    repackaged MIND zips) has that folder's content become `target`. An existing `target`
    raises FileExistsError rather than being overwritten.
    """
    zip_path, target = Path(zip_path), Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; delete it to extract {zip_path} again")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise _corrupt(zip_path, str(err)) from err
    with zf:
        infos = zf.infolist()
        for info in infos:
            _check_member(info, zip_path, "/extract-root")
        prefix = _top_folder([i.filename for i in infos])

        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
        try:
            for info in infos:
                zf.extract(info, tmp)
            os.replace(tmp / prefix if prefix else tmp, target)
        except (zipfile.BadZipFile, zlib.error, EOFError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _corrupt(zip_path, str(err) or type(err).__name__) from err
        except NotImplementedError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _unreadable(zip_path, err) from err
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if prefix:
            shutil.rmtree(tmp, ignore_errors=True)  # only the emptied wrapper is left
    return target
