"""Writing a synthetic world to disk as MIND files, all or nothing.

Each split gets behaviors.tsv, news.tsv, entity_embedding.vec and relation_embedding.vec as
MIND has them, plus click_probability.tsv (and, for the unlabeled test split, truth.txt).
Impressions are drawn and written in blocks of IMPRESSION_BLOCK, each from its own random
stream, so memory stays bounded and the bytes do not depend on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rich.progress import Progress

from newsrec.constants import SPLITS
from newsrec.data.synthetic.config import (
    GENERATOR_VERSION,
    IMPRESSION_BLOCK,
    RELATIONS,
    WorldConfig,
)
from newsrec.data.synthetic.impressions import (
    draw_clicks,
    format_times,
    impression_users_and_times,
    sample_candidates,
)
from newsrec.data.synthetic.streams import stream
from newsrec.data.synthetic.world import World, build_world
from newsrec.utils.io import atomic_path
from newsrec.utils.progress import progress_bar


def _format_floats(values: np.ndarray) -> list[str]:
    return list(map("%.6g".__mod__, values.tolist()))


def write_split(
    w: World, split: str, folder: Path, history_text: list[str], progress: Progress
) -> dict:
    """behaviors.tsv, click_probability.tsv (and truth.txt) of a split, then news and vectors."""
    cfg = w.cfg
    m = {"train": cfg.train_impressions, "dev": cfg.dev_impressions, "test": cfg.test_impressions}[
        split
    ]
    labeled = split != "test"
    folder.mkdir(parents=True)
    who, when = impression_users_and_times(w, split, m)
    used = np.zeros(w.num_news, dtype=bool)
    for user in w.split_users[split].tolist():
        used[w.history_news[w.history_offsets[user] : w.history_offsets[user + 1]]] = True
    id_label = [f"{nid}-{y}" for nid in w.news_id for y in (0, 1)]
    stats = {"impressions": m, "candidates": 0, "clicks": 0}
    task = progress.add_task(f"{split:5s} impressions", total=m)
    names = {"behaviors": "behaviors.tsv", "prob": "click_probability.tsv"}
    if not labeled:
        names["truth"] = "truth.txt"
    with contextlib.ExitStack() as stack:
        files = {
            key: stack.enter_context(_open_write(folder / name)) for key, name in names.items()
        }
        for block, lo in enumerate(range(0, m, IMPRESSION_BLOCK)):
            hi = min(lo + IMPRESSION_BLOCK, m)
            lines = _impression_lines(
                w, split, block, lo, (who[lo:hi], when[lo:hi]), id_label, history_text, used, stats
            )
            for key, text in lines.items():
                files[key].write(text)
            progress.advance(task, hi - lo)
    rows, entities = _write_news(w, folder, used)
    stats.update(
        users=int(len(np.unique(who))),
        news=len(rows),
        entities=len(entities),
        first_time=format_times(w, when.min(keepdims=True))[0],
        last_time=format_times(w, when.max(keepdims=True))[0],
    )
    return stats


def _impression_lines(
    w: World,
    split: str,
    block: int,
    lo: int,
    users_times: tuple[np.ndarray, np.ndarray],
    id_label: list[str],
    history_text: list[str],
    used: np.ndarray,
    stats: dict,
) -> dict[str, str]:
    """The behaviors.tsv, click_probability.tsv (and, unlabeled, truth.txt) text of one block
    of impressions, the first numbered lo + 1; marks the candidates `used`, counts `stats`."""
    users, times = users_times
    labeled = split != "test"
    rng = stream(w.seed, split, block + 1)
    counts, news, logit = sample_candidates(w, users, times, rng)
    p = 1.0 / (1.0 + np.exp(-(logit + w.click_bias)))
    clicked = draw_clicks(counts, p, rng)
    used[news] = True
    stats["candidates"] += len(news)
    stats["clicks"] += int(clicked.sum())
    if labeled:
        cands = [id_label[i] for i in (2 * news + clicked).tolist()]
    else:
        cands = [w.news_id[i] for i in news.tolist()]
        labels = ["1" if c else "0" for c in clicked.tolist()]
    probs = _format_floats(p)
    stamps = format_times(w, times)
    ends = np.cumsum(counts).tolist()
    behaviors, prob_lines, truth_lines = [], [], []
    start = 0
    for i, (user, end) in enumerate(zip(users.tolist(), ends, strict=True)):
        iid = lo + i + 1
        behaviors.append(
            f"{iid}\t{w.user_id[user]}\t{stamps[i]}\t{history_text[user]}"
            f"\t{' '.join(cands[start:end])}\n"
        )
        prob_lines.append(f"{iid}\t{' '.join(probs[start:end])}\n")
        if not labeled:
            truth_lines.append(f"{iid} [{','.join(labels[start:end])}]\n")
        start = end
    lines = {"behaviors": "".join(behaviors), "prob": "".join(prob_lines)}
    if not labeled:
        lines["truth"] = "".join(truth_lines)
    return lines


def _write_news(w: World, folder: Path, used: np.ndarray) -> tuple[list[int], list[int]]:
    """news.tsv (every news the split refers to, histories and candidates, as MIND does) and
    the entity and relation vectors; -> (news rows, entities) written."""
    rows = np.flatnonzero(used).tolist()
    with _open_write(folder / "news.tsv") as f:
        f.write("".join(w.news_line[i] + "\n" for i in rows))
    entities = sorted({e for i in rows for e in w.news_entities[i]})
    with _open_write(folder / "entity_embedding.vec") as f:
        for e in entities:
            if w.entity_has_row[e]:
                f.write(w.entity_qid[e] + "\t" + "\t".join(_fixed6(w.entity_embedding[e])) + "\n")
    with _open_write(folder / "relation_embedding.vec") as f:
        for r, vec in zip(RELATIONS, w.relation_embedding, strict=True):
            f.write(r + "\t" + "\t".join(_fixed6(vec)) + "\n")
    return rows, entities


def _open_write(path: Path):
    return open(path, "w", encoding="utf-8", newline="\n")


def _fixed6(vec: np.ndarray) -> list[str]:
    return list(map("%.6f".__mod__, vec.tolist()))


def generate_world(
    out_dir: Path,
    config: WorldConfig,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
) -> None:
    """Write a synthetic world's `train/`, `dev/`, `test/` folders (and world.json) to out_dir.

    Everything is written into a temporary sibling folder that is renamed to `out_dir` only
    when complete, so a killed run leaves nothing that looks finished. An existing non-empty
    `out_dir` is an error unless `overwrite`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; pass overwrite=True to replace it"
        )
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()
    # Without `overwrite`, a world another process finished meanwhile makes the rename fail
    # (OSError) instead of being replaced under its readers (see SyntheticSource.prepare).
    with atomic_path(out_dir, "partial", replace=overwrite) as tmp, progress_bar(progress) as bar:
        tmp.mkdir()
        task = bar.add_task("world (news, users, histories)", total=1)
        w = build_world(config, seed)
        history_text = [
            " ".join(w.news_id[j] for j in w.history_news[a:b].tolist())
            for a, b in zip(
                w.history_offsets[:-1].tolist(), w.history_offsets[1:].tolist(), strict=True
            )
        ]
        bar.advance(task)
        splits = {s: write_split(w, s, tmp / s, history_text, bar) for s in SPLITS}
        summary = {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "config_digest": config.digest(),
            "config": asdict(config),
            "click_bias": round(w.click_bias, 6),
            "words": len(w.words),
            "entities": len(w.entity_qid),
            "mean_title_words": round(w.title_words / w.num_news, 3),
            "splits": splits,
        }
        # world.json last: a folder without it was not finished
        (tmp / "world.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def is_complete_world(folder: Path) -> bool:
    """True when `folder` holds a finished world (world.json and every split's files)."""
    folder = Path(folder)
    needed = [
        "behaviors.tsv",
        "news.tsv",
        "entity_embedding.vec",
        "relation_embedding.vec",
        "click_probability.tsv",
    ]
    if not (folder / "world.json").is_file():
        return False
    if not all((folder / s / name).is_file() for s in SPLITS for name in needed):
        return False
    return (folder / "test" / "truth.txt").is_file()


def remove_dead_partials(folder: Path) -> None:
    """Delete temp folders of killed runs for `folder` (this host's, whose process is gone)."""
    prefix = f".{folder.name}.partial-{socket.gethostname()}-"  # see utils.io.temporary_sibling
    if not folder.parent.is_dir():
        return
    for partial in folder.parent.glob(f"{prefix}*"):
        pid = partial.name[len(prefix) :].removesuffix(folder.suffix)
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(partial, ignore_errors=True)
        except PermissionError:
            pass  # alive, someone else's
