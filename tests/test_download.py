"""Downloading, checking and extracting MIND zips, all against a loopback HTTP server."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import pytest

from newsrec.data import download
from newsrec.data.download import (
    CorruptZipError,
    DownloadError,
    MindSource,
    UnsafeZipError,
    check_zip,
    download_file,
    fetch_zip,
    safe_extract,
)

from fixtures_mind import (  # noqa: F401  (no_internet is a fixture)
    make_mind_zip,
    no_internet,
    serve_folder,
    sha256,
    write_mind_split,
)

pytestmark = pytest.mark.usefixtures("no_internet")


@pytest.fixture
def served(tmp_path: Path) -> Path:
    """A web root holding release/MINDsmall_{train,dev}.zip and release/MINDlarge_*.zip."""
    web = tmp_path / "web"
    for variant in ("small", "large"):
        splits = ("train", "dev", "test") if variant == "large" else ("train", "dev")
        for k, split in enumerate(splits):
            folder = write_mind_split(
                tmp_path / "src" / f"{variant}_{split}",
                seed=k,
                labeled=split != "test",
                first_impression_id=1 + 100 * k,
            )
            make_mind_zip(folder, web / "release" / f"MIND{variant}_{split}.zip")
    return web


def _leftovers(folder: Path) -> list[str]:
    """Names in `folder` other than the zips cache: extracted or temporary folders."""
    return sorted(p.name for p in folder.iterdir() if p.name != "zips") if folder.exists() else []


# -------------------------------------------------------------------------------- download_file


def test_download_file_gives_the_served_bytes(served: Path, tmp_path: Path) -> None:
    original = served / "release" / "MINDsmall_train.zip"
    with serve_folder(served) as server:
        dest = download_file(
            f"{server.url}/release/MINDsmall_train.zip", tmp_path / "dl" / "a.zip", progress=False
        )
    assert sha256(dest) == sha256(original)
    assert not dest.with_name("a.zip.part").exists()


def test_interrupted_download_resumes_to_the_same_bytes(served: Path, tmp_path: Path) -> None:
    original = served / "release" / "MINDsmall_train.zip"
    dest = tmp_path / "dl" / "a.zip"
    part = dest.with_name("a.zip.part")
    with serve_folder(served) as server:
        url = f"{server.url}/release/MINDsmall_train.zip"
        server.break_after["/release/MINDsmall_train.zip"] = 1000
        with pytest.raises(DownloadError, match="run again to resume"):
            download_file(url, dest, progress=False, chunk_size=256)
        assert not dest.exists()  # never a truncated file under the final name
        assert part.stat().st_size == 1000

        download_file(url, dest, progress=False, chunk_size=256)
        assert server.requests[-1] == ("GET", "/release/MINDsmall_train.zip", "bytes=1000-")
    assert sha256(dest) == sha256(original)
    assert not part.exists()


def test_server_that_ignores_range_restarts_from_zero(served: Path, tmp_path: Path) -> None:
    original = served / "release" / "MINDsmall_dev.zip"
    dest = tmp_path / "b.zip"
    dest.with_name("b.zip.part").write_bytes(b"garbage that is not a prefix")
    with serve_folder(served) as server:
        server.ignore_range = True
        download_file(f"{server.url}/release/MINDsmall_dev.zip", dest, progress=False)
        assert server.requests[-1][2] is not None  # it did ask to resume
    assert sha256(dest) == sha256(original)


def test_complete_part_file_is_accepted_on_416(served: Path, tmp_path: Path) -> None:
    original = served / "release" / "MINDsmall_dev.zip"
    dest = tmp_path / "c.zip"
    dest.with_name("c.zip.part").write_bytes(original.read_bytes())
    with serve_folder(served) as server:
        download_file(f"{server.url}/release/MINDsmall_dev.zip", dest, progress=False)
    assert sha256(dest) == sha256(original)


def test_http_error_names_the_url_and_status(served: Path, tmp_path: Path) -> None:
    with serve_folder(served) as server, pytest.raises(DownloadError, match="404"):
        download_file(f"{server.url}/nope.zip", tmp_path / "d.zip", progress=False)
    assert not (tmp_path / "d.zip").exists()


# -------------------------------------------------------------------------------- fetch_zip


def test_fetch_zip_falls_back_to_the_next_mirror(
    served: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serve_folder(served) as server, caplog.at_level(logging.WARNING):
        mirrors = [f"{server.url}/dead/{{name}}", f"{server.url}/release/{{name}}"]
        path = fetch_zip("MINDsmall_train.zip", mirrors, tmp_path / "cache", progress=False)
        paths = [p for _, p, _ in server.requests]
    assert paths == ["/dead/MINDsmall_train.zip", "/release/MINDsmall_train.zip"]
    assert sha256(path) == sha256(served / "release" / "MINDsmall_train.zip")
    assert "/dead/MINDsmall_train.zip" in caplog.text and "404" in caplog.text


def test_fetch_zip_skips_a_mirror_serving_junk(served: Path, tmp_path: Path) -> None:
    (served / "junk").mkdir()
    (served / "junk" / "MINDsmall_dev.zip").write_text("<html>Gone</html>")
    with serve_folder(served) as server:
        mirrors = [f"{server.url}/junk/{{name}}", f"{server.url}/release/{{name}}"]
        path = fetch_zip("MINDsmall_dev.zip", mirrors, tmp_path / "cache", progress=False)
        check_zip(path)
        # With only junk on offer, nothing is left in the cache to be mistaken for the zip.
        with pytest.raises(DownloadError, match="served a bad zip"):
            fetch_zip("MINDsmall_dev.zip", mirrors[:1], tmp_path / "cache2", progress=False)
    assert [p.name for p in (tmp_path / "cache2").iterdir()] == []


def test_fetch_zip_error_lists_every_mirror(served: Path, tmp_path: Path) -> None:
    with serve_folder(served) as server:
        mirrors = [f"{server.url}/one/{{name}}", f"{server.url}/two/{{name}}"]
        with pytest.raises(DownloadError) as info:
            fetch_zip("MINDsmall_train.zip", mirrors, tmp_path / "cache", progress=False)
    message = str(info.value)
    assert f"{server.url}/one/MINDsmall_train.zip" in message
    assert f"{server.url}/two/MINDsmall_train.zip" in message
    assert message.count("404") == 2


def test_fetch_zip_reuses_the_cached_zip(served: Path, tmp_path: Path) -> None:
    with serve_folder(served) as server:
        mirrors = [f"{server.url}/release/{{name}}"]
        first = fetch_zip("MINDsmall_dev.zip", mirrors, tmp_path / "cache", progress=False)
        again = fetch_zip("MINDsmall_dev.zip", mirrors, tmp_path / "cache", progress=False)
        assert len(server.requests) == 1
    assert first == again


def test_hf_mirror_goes_through_huggingface_hub(
    served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hf:// mirrors use the real hf_hub_download, here pointed at the loopback server."""
    import huggingface_hub.constants

    hub = served / "datasets" / "yjw1029" / "MIND" / "resolve" / "main"
    hub.mkdir(parents=True)
    (hub / "MINDsmall_dev.zip").write_bytes((served / "release" / "MINDsmall_dev.zip").read_bytes())
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True, raising=False)
    with serve_folder(served) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        path = fetch_zip(
            "MINDsmall_dev.zip", ["hf://yjw1029/MIND/{name}"], tmp_path / "cache", progress=False
        )
        assert any(
            p == "/datasets/yjw1029/MIND/resolve/main/MINDsmall_dev.zip"
            for _, p, _ in server.requests
        )
    assert path == tmp_path / "cache" / "MINDsmall_dev.zip"
    assert sha256(path) == sha256(served / "release" / "MINDsmall_dev.zip")


def test_hf_addresses_parse() -> None:
    assert download._split_hf("hf://yjw1029/MIND/MINDsmall_train.zip") == (
        "yjw1029/MIND",
        "MINDsmall_train.zip",
        "dataset",
    )
    assert download._split_hf("hf://models/stanfordnlp/glove/glove.6B.zip") == (
        "stanfordnlp/glove",
        "glove.6B.zip",
        "model",
    )
    with pytest.raises(ValueError, match="expected hf://"):
        download._split_hf("hf://just-a-repo/file.zip")


# -------------------------------------------------------------------------------- zips


def _corrupt_member_bytes(zip_path: Path) -> None:
    """Flip bytes inside a stored member so the central directory is fine but its CRC fails."""
    data = bytearray(zip_path.read_bytes())
    at = data.index(b"N1\t")  # the first news row, stored uncompressed below
    data[at : at + 2] = b"XX"
    zip_path.write_bytes(bytes(data))


def _stored_mind_zip(tmp_path: Path, zip_path: Path) -> Path:
    folder = write_mind_split(tmp_path / "stored_src")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(folder.iterdir()):
            zf.write(p, p.name)
    return zip_path


def test_corrupt_zip_gives_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    base = tmp_path / "root" / "mind"
    zip_path = _stored_mind_zip(tmp_path, base / "zips" / "MINDsmall_train.zip")
    _corrupt_member_bytes(zip_path)
    source = MindSource("small", mirrors=["http://127.0.0.1:9/{name}"])
    with pytest.raises(CorruptZipError) as info:
        source.prepare(tmp_path / "root")
    assert str(zip_path) in str(info.value) and "Delete it and run again" in str(info.value)
    assert _leftovers(base) == []


def test_safe_extract_of_a_corrupt_zip_leaves_no_folder(tmp_path: Path) -> None:
    zip_path = _stored_mind_zip(tmp_path, tmp_path / "z" / "bad.zip")
    _corrupt_member_bytes(zip_path)
    with pytest.raises(CorruptZipError, match="bad.zip"):
        safe_extract(zip_path, tmp_path / "z" / "out")
    assert sorted(p.name for p in (tmp_path / "z").iterdir()) == ["bad.zip"]


def test_truncated_zip_is_reported(tmp_path: Path) -> None:
    zip_path = make_mind_zip(write_mind_split(tmp_path / "s"), tmp_path / "t.zip")
    zip_path.write_bytes(zip_path.read_bytes()[:200])
    with pytest.raises(CorruptZipError, match="t.zip"):
        check_zip(zip_path)


def test_zip_without_mind_members_is_refused(tmp_path: Path) -> None:
    zip_path = make_mind_zip({"readme.txt": "hello"}, tmp_path / "other.zip")
    with pytest.raises(CorruptZipError, match="behaviors.tsv, news.tsv"):
        check_zip(zip_path)
    check_zip(zip_path, required=["readme.txt"])


def test_unsupported_compression_says_to_unzip_elsewhere(tmp_path: Path) -> None:
    """Deflate64 zips (some Windows tools) cannot be read by Python: re-downloading won't help."""
    zip_path = _stored_mind_zip(tmp_path, tmp_path / "d64.zip")
    data = bytearray(zip_path.read_bytes())
    for signature, method_at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(signature)
        while at >= 0:
            data[at + method_at : at + method_at + 2] = (9).to_bytes(2, "little")  # Deflate64
            at = data.find(signature, at + 4)
    zip_path.write_bytes(bytes(data))
    with pytest.raises(CorruptZipError, match="data_dir"):
        check_zip(zip_path)
    with pytest.raises(CorruptZipError, match="data_dir"):
        safe_extract(zip_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("evil", ["../escape.txt", "sub/../../escape.txt", "/abs/escape.txt"])
def test_unsafe_member_is_refused_before_writing(tmp_path: Path, evil: str) -> None:
    work = tmp_path / "w"
    zip_path = make_mind_zip({"news.tsv": "N1\n", evil: "gotcha"}, work / "evil.zip")
    with pytest.raises(UnsafeZipError, match="escape.txt"):
        safe_extract(zip_path, work / "out")
    assert sorted(p.name for p in work.iterdir()) == ["evil.zip"]
    assert not (tmp_path / "escape.txt").exists()


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "link.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("news.tsv", "N1\n")
        link = zipfile.ZipInfo("behaviors.tsv")
        link.external_attr = (0o120777 << 16) | 0x20
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeZipError, match="symlink"):
        safe_extract(zip_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_single_top_level_folder_is_unwrapped(tmp_path: Path) -> None:
    folder = write_mind_split(tmp_path / "s")
    zip_path = make_mind_zip(folder, tmp_path / "nested.zip", top_folder="MINDsmall_train")
    check_zip(zip_path)
    out = safe_extract(zip_path, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in folder.iterdir())
    assert (out / "news.tsv").read_bytes() == (folder / "news.tsv").read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_extract_refuses_to_overwrite(tmp_path: Path) -> None:
    zip_path = make_mind_zip(write_mind_split(tmp_path / "s"), tmp_path / "a.zip")
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="out"):
        safe_extract(zip_path, tmp_path / "out")


# -------------------------------------------------------------------------------- MindSource


def test_mindsource_prepare_downloads_and_extracts(served: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    with serve_folder(served) as server:
        mirrors = [f"{server.url}/dead/{{name}}", f"{server.url}/release/{{name}}"]
        paths = MindSource("small", mirrors=mirrors).prepare(root)
        count = len(server.requests)
        again = MindSource("small", mirrors=mirrors).prepare(root)
        assert len(server.requests) == count  # finished folders are reused, nothing fetched
    assert again == paths
    assert paths.train == root / "mind" / "MINDsmall_train"
    assert paths.dev == root / "mind" / "MINDsmall_dev"
    assert paths.test is None and paths.has_truth is False
    for folder, split in [(paths.train, "train"), (paths.dev, "dev")]:
        source = tmp_path / "src" / f"small_{split}"
        for name in ("behaviors.tsv", "news.tsv", "entity_embedding.vec"):
            assert (folder / name).read_bytes() == (source / name).read_bytes()
    assert sorted(p.name for p in (root / "mind" / "zips").glob("*.zip")) == [
        "MINDsmall_dev.zip",
        "MINDsmall_train.zip",
    ]
    assert _leftovers(root / "mind") == ["MINDsmall_dev", "MINDsmall_train"]


def test_mindsource_large_has_a_test_split(served: Path, tmp_path: Path) -> None:
    with serve_folder(served) as server:
        paths = MindSource("large", mirrors=[f"{server.url}/release/{{name}}"]).prepare(tmp_path)
    assert paths.test == tmp_path / "mind" / "MINDlarge_test"
    first = (paths.test / "behaviors.tsv").read_text().splitlines()[0].split("\t")
    assert "-" not in first[4]  # unlabeled candidates


def test_mindsource_data_dir_makes_no_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "MIND"
    write_mind_split(data_dir / "MINDsmall_train")
    write_mind_split(data_dir / "MINDsmall_dev", seed=1)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("no download may happen with data_dir")

    monkeypatch.setattr(download, "download_file", refuse)
    monkeypatch.setattr(download, "_download_hf", refuse)
    root = tmp_path / "root"
    paths = MindSource("small", data_dir=str(data_dir)).prepare(root)
    assert paths.train == data_dir / "MINDsmall_train"
    assert paths.dev == data_dir / "MINDsmall_dev"
    assert paths.test is None
    assert not root.exists()


def test_mindsource_data_dir_names_the_missing_folder(tmp_path: Path) -> None:
    write_mind_split(tmp_path / "MINDsmall_train")
    with pytest.raises(FileNotFoundError, match="MINDsmall_dev"):
        MindSource("small", data_dir=tmp_path).prepare(tmp_path / "root")


def test_mindsource_zip_names_and_defaults() -> None:
    demo = MindSource("demo")
    assert [demo.zip_name(s) for s in demo.splits] == ["MINDdemo_train.zip", "MINDdemo_dev.zip"]
    assert MindSource("large").zip_name("test") == "MINDlarge_test.zip"
    assert demo.mirrors == list(download.DEFAULT_MIND_MIRRORS)
    assert demo.mirrors[0] == "hf://yjw1029/MIND/{name}"
    with pytest.raises(ValueError, match="variant"):
        MindSource("medium")


def test_an_unreachable_hub_fails_at_once_and_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No network: the hf:// mirror is not retried five times (~23 s, each retry logged
    twice); one line per mirror, and the reasons once, in the error."""
    import time

    import huggingface_hub.constants

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    start = time.perf_counter()
    with caplog.at_level(logging.DEBUG), pytest.raises(DownloadError) as raised:
        fetch_zip("MINDsmall_dev.zip", ["hf://yjw1029/MIND/{name}"], tmp_path / "c", progress=False)
    assert time.perf_counter() - start < 5
    assert "huggingface.co does not resolve (no network or no DNS)" in str(raised.value)
    assert "Retrying" not in caplog.text
    assert caplog.text.count("mirror hf://yjw1029/MIND/MINDsmall_dev.zip failed") == 1
