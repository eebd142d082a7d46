"""hf:// mirrors (`hf://[datasets/|models/]owner/repo/path`): files fetched from the Hugging
Face Hub with huggingface_hub, which resumes and caches on its own (newsrec.data.download
tries them among the other mirrors)."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import urllib.parse
from pathlib import Path


def split_hf(source: str) -> tuple[str, str, str]:
    """hf://[datasets/|models/]owner/repo/path/in/repo -> (repo_id, filename, repo_type)."""
    parts = source.removeprefix("hf://").strip("/").split("/")
    repo_type = "dataset"
    if parts and parts[0] in ("datasets", "models"):
        repo_type = "dataset" if parts.pop(0) == "datasets" else "model"
    if len(parts) < 3:
        raise ValueError(f"{source}: expected hf://[datasets/|models/]<owner>/<repo>/<file>")
    return "/".join(parts[:2]), "/".join(parts[2:]), repo_type


def resolves(url: str) -> bool:
    """Whether the host of `url` has an address (no network, no DNS: it has none)."""
    try:
        socket.getaddrinfo(urllib.parse.urlsplit(url).hostname, None)
    except OSError:
        return False
    return True


def download_hf(source: str, dest: Path) -> Path:
    """Fetch an hf:// file into dest's folder (hf_hub_download resumes and caches on its own).

    huggingface_hub retries a failed request five times over ~23 s and logs each retry twice
    (its own handler and the root logger's): it is quiet here, and fetch_zip logs the
    mirror's failure once. A Hub whose name does not resolve is not tried at all; only
    Hugging Face's local cache is looked at."""
    import huggingface_hub

    repo_id, filename, repo_type = split_hf(source)
    # Read now, not at import: a Hub mirror set after start-up (or by a test) still counts.
    endpoint = os.environ.get("HF_ENDPOINT") or None
    hub = endpoint or huggingface_hub.constants.ENDPOINT
    online = resolves(hub)
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        local = huggingface_hub.hf_hub_download(
            repo_id,
            filename,
            repo_type=repo_type,
            local_dir=dest.parent,
            endpoint=endpoint,
            local_files_only=not online,
        )
    except huggingface_hub.errors.LocalEntryNotFoundError:
        if online:
            raise
        host = urllib.parse.urlsplit(hub).hostname
        raise ConnectionError(
            f"{host} does not resolve (no network or no DNS) and Hugging Face's local cache "
            "does not hold the file"
        ) from None
    finally:
        hub_logger.setLevel(level)
    local = Path(local)
    if local.resolve() != dest.resolve():  # a file in a repo subfolder: bring it to dest
        shutil.move(str(local), dest)
    return dest
