"""yusanshi/news-recommendation's training speed on a newsrec synthetic MIND world, one command.

    python benchmarks/peers/yusanshi.py --repo /work/peers_src/yusanshi \\
        --data /work/peers_data/synthetic_small --python /work/peers_venv/bin/python \\
        --models naml lstur npa dkn nrms --steps 10 --warmup 3 --rounds 3 \\
        --out benchmarks/peers/results_yusanshi.json

The peer's code is not in this repository: --repo is an exported checkout of it (how to make
one: benchmarks/peers/README.md). None of its files is edited; what differs from running its
README's steps is done at run time and listed in CHANGES below, which also goes into the
output JSON. --python names an interpreter with the peer's requirements (pandas<3, nltk,
swifter, and torch); newsrec's own environment is left alone.

What runs, each part in its own process (so peak memory is its own), in a work folder that
holds data/train, data/val, data/test as the peer expects:
- prep: the peer's data_preprocess.py, its __main__ unchanged (behaviors, news of all three
  splits, word and entity embeddings), timed as a whole;
- train, one process per model: the peer's config, dataset, model classes and train.py's
  loop body. After --warmup batches, one live round of --steps batches drawn from its own
  DataLoader (4 workers, shuffle, pin_memory: data loading included, as its train.py runs)
  and --rounds rounds over those same batches (model work only, as newsrec's
  benchmarks/bench.py times its models). samples/s = batch size / median seconds per batch
  of the rounds; a sample is one clicked news with its K negatives and the user's history,
  the unit of newsrec's figures.

NPA is not in the peer's repository (no NPA in any commit of it): asked for, it is reported
as not available.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/
from bench import host  # noqa: E402  (benchmarks/bench.py: the machine's CPU, cores, memory)

# newsrec's preset name -> the peer's model name (its src/model/<name>, config.<name>Config).
MODELS = {"nrms": "NRMS", "naml": "NAML", "lstur": "LSTUR", "dkn": "DKN", "npa": None}
UNAVAILABLE = {
    "npa": "yusanshi/news-recommendation has no NPA: src/model holds NRMS, NAML, LSTUR, DKN, "
    "HiFiArk, TANR and Exp1, and no commit of its history ever added an NPA folder."
}

# Batch size and K. "figure": the NRMS peer figure's (DESIGN.md section 6: batch 64, K = 4),
# which are newsrec's for every model (conf/data/_mind.yaml), so both sides train the same
# samples. "config": the peer's src/config.py as it stands (batch 128, K = 2).
SIZES = {"figure": (64, 4), "config": (128, 2)}

# The world's split folders -> the peer's (its README: MIND-small's dev is both val and test;
# newsrec's worlds have a test split of their own, used for its test).
SPLITS = {"train": "train", "val": "dev", "test": "test"}
WORLD_FILES = ("news.tsv", "behaviors.tsv", "entity_embedding.vec")
GLOVE = Path("data/glove/glove.840B.300d.txt")
ABSENT_WORD = "<no-word-of-the-vocabulary>"

CHANGES = [
    {
        "what": "data paths",
        "change": "none in its code: its scripts read ./data/{train,val,test} from the "
        "working directory; the work folder's data/train, data/val, data/test hold symbolic "
        "links to the world's train/, dev/, test/ news.tsv, behaviors.tsv and "
        "entity_embedding.vec, and its code runs with that folder as working directory",
        "why": "the world is written in MIND's layout; dev plays val as MIND-small's does",
    },
    {
        "what": "GloVe word vectors",
        "change": "a one-line stand-in data/glove/glove.840B.300d.txt holding one word that "
        "is in no vocabulary; its own generate_word_embedding then draws every word's vector "
        "from N(0, 1), its path for words missing from GloVe, and writes "
        "data/train/pretrained_word_embedding.npy of shape (1 + words, 300) as usual",
        "why": "no GloVe here (no network but PyPI), and the world's words are made up; "
        "the values do not change the cost of a step",
    },
    {
        "what": "entity vectors (DKN)",
        "change": "none: its transform_entity_embedding reads the world's "
        "train/entity_embedding.vec (MIND format, 100 dimensions) as it reads MIND's",
        "why": "",
    },
    {
        "what": "tokenizer",
        "change": "nltk.tokenize.word_tokenize is called with preserve_line=True (no "
        "sentence splitting before the Treebank word tokenizer)",
        "why": "its default first splits sentences with NLTK's punkt model, which is "
        "downloaded by nltk.download and cannot be here; the prep part counts the world's "
        "texts where a sentence end stands inside the text (only there can the tokens "
        "differ: a period stays on its word)",
    },
    {
        "what": "config vocabulary sizes",
        "change": "num_words, num_categories, num_entities, num_users set to 1 + the rows of "
        "the word2int, category2int, entity2int and user2int files its preprocessing wrote",
        "why": "its README asks the user to copy these into src/config.py by hand",
    },
    {
        "what": "config batch size and K",
        "change": "sizes=figure: batch_size 128 -> 64 and negative_sampling_ratio 2 -> 4; "
        "sizes=config: unchanged. Every other value of config.py is its own (title 20 words, "
        "abstract 50, history 50, 300-d words, 15 heads, 300 or 50 filters, dropout 0.2, "
        "Adam 1e-4, 4 DataLoader workers, LSTUR-ini)",
        "why": "the NRMS peer figure was taken at batch 64, K = 4, newsrec's sizes",
    },
    {
        "what": "device",
        "change": "CUDA_VISIBLE_DEVICES is empty, so its "
        "torch.device('cuda:0' if torch.cuda.is_available() else 'cpu') is the CPU",
        "why": "a CPU benchmark; with a CPU build of torch it is the CPU anyway",
    },
    {
        "what": "seeds",
        "change": "random, numpy and torch seeded (--seed) in each process",
        "why": "it seeds nothing; negatives drawn at preprocessing and batches repeat",
    },
    {
        "what": "training loop",
        "change": "train.py's model construction (word vectors from the .npy, DKN's entity "
        "vectors, context vectors absent as in its setup), BaseDataset, "
        "DataLoader(batch_size, shuffle=True, num_workers, drop_last=True, "
        "pin_memory=True), re-created when exhausted, CrossEntropyLoss against class 0, "
        "Adam, and its step (forward as train.py calls each model, loss.item(), "
        "zero_grad, backward, step) run here for a fixed number of batches; left out: "
        "the TensorBoard SummaryWriter and its scalars every 10 batches, tqdm, checkpoint "
        "load and save, validation every 1,000 batches and early stopping",
        "why": "a fixed number of timed batches and no evaluation",
    },
]


def peer_commit(repo: Path) -> str:
    if (repo / "PEER_COMMIT").exists():
        return (repo / "PEER_COMMIT").read_text().strip()
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def source_digest(repo: Path) -> str:
    """sha256 over the peer's src/**/*.py (path and bytes): shows its code ran unchanged."""
    digest = hashlib.sha256()
    for path in sorted((repo / "src").rglob("*.py")):
        digest.update(str(path.relative_to(repo)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def machine() -> dict:
    cpu, cores, memory = host()
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gib": round(memory, 1),
        "platform": platform.platform(),
    }


def load() -> dict:
    one, five, fifteen = os.getloadavg()
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"loadavg_1_5_15": [one, five, fifteen], "uptime": uptime}


def peak_gib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 2**20  # KiB -> GiB on Linux


# ----------------------------------------------------------------------------- child side
def peer_setup(args, model_name: str):
    """Import the peer's config as its scripts do, with this benchmark's values applied."""
    import random

    import numpy as np
    import torch

    os.environ["MODEL_NAME"] = model_name  # its config.py and every script read this
    sys.path.insert(0, str(Path(args.repo).resolve() / "src"))
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    import config as peer_config

    base = peer_config.BaseConfig
    base.batch_size, base.negative_sampling_ratio = SIZES[args.sizes]
    return peer_config


def versions() -> dict:
    import numpy
    import pandas
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def inner_sentence_ends() -> dict:
    """Texts where punkt could split a sentence inside (a . ! or ? followed by a space)."""
    import re

    import pandas as pd

    pattern = re.compile(r"[.!?]\s")
    counts = {}
    for split in SPLITS:
        news = pd.read_table(
            f"data/{split}/news.tsv", header=None, usecols=[3, 4], quoting=3, na_filter=False
        )
        texts = news[3].tolist() + news[4].tolist()
        counts[split] = {"texts": len(texts), "with_inner_sentence_end": 0}
        counts[split]["with_inner_sentence_end"] = sum(bool(pattern.search(t)) for t in texts)
    return counts


def child_prep(args) -> dict:
    import runpy
    from functools import partial

    import nltk.tokenize

    peer_setup(args, "NRMS")  # data_preprocess reads BaseConfig values only
    nltk.tokenize.word_tokenize = partial(nltk.tokenize.word_tokenize, preserve_line=True)
    GLOVE.parent.mkdir(parents=True, exist_ok=True)
    GLOVE.write_text(ABSENT_WORD + " 0.0" * 300 + "\n")
    script = Path(args.repo).resolve() / "src" / "data_preprocess.py"
    start = time.perf_counter()
    runpy.run_path(str(script), run_name="__main__")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "peak_rss_gib": peak_gib(resource.RUSAGE_SELF),
        "peak_rss_children_gib": peak_gib(resource.RUSAGE_CHILDREN),
        "vocabulary": vocabulary(),
        "behaviors_rows": sum(1 for _ in open("data/train/behaviors_parsed.tsv")) - 1,
        "tokenizer_check": inner_sentence_ends(),
        **versions(),
    }


def vocabulary() -> dict:
    import pandas as pd

    files = {
        "num_words": "word2int",
        "num_categories": "category2int",
        "num_entities": "entity2int",
        "num_users": "user2int",
    }
    # na_filter=False as its own loaders read word2int ("nan" is a word)
    return {
        key: 1 + len(pd.read_table(f"data/train/{name}.tsv", na_filter=False))
        for key, name in files.items()
    }


def child_train(args) -> dict:
    import importlib
    import math

    import numpy as np
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader

    model_name = MODELS[args.model]
    peer_config = peer_setup(args, model_name)
    for key, value in vocabulary().items():
        setattr(peer_config.BaseConfig, key, value)
    config = getattr(peer_config, f"{model_name}Config")
    Model = getattr(importlib.import_module(f"model.{model_name}"), model_name)
    from dataset import BaseDataset

    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")

    # train.py, from the word vectors to the optimizer
    start = time.perf_counter()
    pretrained_word_embedding = torch.from_numpy(
        np.load("./data/train/pretrained_word_embedding.npy")
    ).float()
    if model_name == "DKN":
        pretrained_entity_embedding = torch.from_numpy(
            np.load("./data/train/pretrained_entity_embedding.npy")
        ).float()
        model = Model(config, pretrained_word_embedding, pretrained_entity_embedding, None)
    else:
        model = Model(config, pretrained_word_embedding)
    model = model.to(device)
    dataset = BaseDataset("data/train/behaviors_parsed.tsv", "data/train/news_parsed.tsv")

    def loader():
        return iter(
            DataLoader(
                dataset,
                batch_size=config.batch_size,
                shuffle=True,
                num_workers=config.num_workers,
                drop_last=True,
                pin_memory=True,
            )
        )

    dataloader = loader()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    setup_s = time.perf_counter() - start
    losses = []

    def next_batch():
        nonlocal dataloader
        try:
            return next(dataloader)
        except StopIteration:  # as train.py: a new DataLoader over the same dataset
            dataloader = loader()
            return next(dataloader)

    def step(minibatch):  # train.py's loop body, minus TensorBoard, tqdm and validation
        if model_name == "LSTUR":
            y_pred = model(
                minibatch["user"],
                minibatch["clicked_news_length"],
                minibatch["candidate_news"],
                minibatch["clicked_news"],
            )
        else:
            y_pred = model(minibatch["candidate_news"], minibatch["clicked_news"])
        y = torch.zeros(len(y_pred)).long().to(device)
        loss = criterion(y_pred, y)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(args.warmup):
        step(next_batch())
    warmup_s = time.perf_counter() - start

    # Live round: batches drawn from its DataLoader inside the timed loop, as train.py runs.
    batches, wait_s = [], 0.0
    start = time.perf_counter()
    for _ in range(args.steps):
        fetched = time.perf_counter()
        minibatch = next_batch()
        wait_s += time.perf_counter() - fetched
        batches.append(minibatch)
        step(minibatch)
    live_s = (time.perf_counter() - start) / args.steps

    # Rounds over the same batches: model work only (newsrec's benchmarks/bench.py does so).
    rounds = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        for minibatch in batches:
            step(minibatch)
        rounds.append((time.perf_counter() - start) / args.steps)
    step_s = statistics.median(rounds)
    peak_self = peak_gib(resource.RUSAGE_SELF)
    calls = 1 + config.negative_sampling_ratio + config.num_clicked_news_a_user
    del dataloader, batches  # joins the DataLoader's workers: their peak is then counted
    return {
        "peer_model": model_name,
        "batch_size": config.batch_size,
        "negative_sampling_ratio": config.negative_sampling_ratio,
        "encoder_calls_per_batch": calls,
        "num_words_title": config.num_words_title,
        "num_workers": config.num_workers,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_rows": len(dataset),
        "samples_per_s": config.batch_size / step_s,
        "samples_per_s_best": config.batch_size / min(rounds),
        "samples_per_s_live": config.batch_size / live_s,
        "step_ms_rounds": [1000 * r for r in rounds],
        "step_ms_live": 1000 * live_s,
        "loader_wait_ms_live": 1000 * wait_s / args.steps,
        "warmup_s": warmup_s,
        "setup_s": setup_s,
        "losses_first_last": [losses[0], losses[-1]],
        "loss_finite": all(math.isfinite(x) for x in losses),
        "steps_total": len(losses),
        "peak_rss_gib": peak_self,
        "peak_rss_workers_gib": peak_gib(resource.RUSAGE_CHILDREN),
        **versions(),
    }


# ---------------------------------------------------------------------------- parent side
def link_world(world: Path, work: Path) -> None:
    for split, source in SPLITS.items():
        folder = work / "data" / split
        folder.mkdir(parents=True, exist_ok=True)
        for name in WORLD_FILES:
            target = folder / name
            if target.is_symlink() or target.exists():
                target.unlink()
            target.symlink_to((world / source / name).resolve())


def child(args, part: str, *extra: str) -> dict:
    command = [args.python, str(Path(__file__).resolve()), "--child", part, *extra]
    command += ["--repo", str(Path(args.repo).resolve()), "--sizes", args.sizes]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    command += ["--rounds", str(args.rounds), "--seed", str(args.seed)]
    command += ["--threads", str(args.threads)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONWARNINGS": "ignore"}
    log = Path(args.work) / f"{part}{'-' + extra[1] if extra else ''}.log"
    with open(log, "w") as handle:
        result = subprocess.run(
            command, cwd=args.work, env=env, stdout=subprocess.PIPE, stderr=handle, text=True
        )
    if result.returncode != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{part} {' '.join(extra)} failed (log {log}):\n{tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", required=True, help="exported checkout of the peer")
    parser.add_argument("--data", help="a world folder (train/, dev/, test/)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=10, help="batches per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the same batches")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    parser.add_argument("--sizes", choices=list(SIZES), default="figure")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: its default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--python", default=sys.executable, help="interpreter with its needs")
    parser.add_argument("--work", help="work folder (default: a new temporary one, removed)")
    parser.add_argument("--skip-prep", action="store_true", help="reuse --work's prepared data")
    parser.add_argument("--out", default="benchmarks/peers/results_yusanshi.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = child_prep(args) if args.child == "prep" else child_train(args)
        print(json.dumps(result))
        return

    if not args.data:
        parser.error("--data is required")
    repo, world = Path(args.repo).resolve(), Path(args.data).resolve()
    if not (repo / "src" / "model").is_dir():
        parser.error(f"{repo} is not a checkout of yusanshi/news-recommendation (no src/model)")
    temporary = args.work is None
    args.work = str(Path(args.work or tempfile.mkdtemp(prefix="yusanshi-")).resolve())
    Path(args.work).mkdir(parents=True, exist_ok=True)
    world_json = world / "world.json"
    report = {
        "benchmark": "yusanshi/news-recommendation training speed (benchmarks/peers/yusanshi.py)",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "peer": {
            "repository": "github.com/yusanshi/news-recommendation",
            "checkout": str(repo),
            "commit": peer_commit(repo),
            "src_sha256": source_digest(repo),
        },
        "data": {
            "world": str(world),
            "world_json": json.loads(world_json.read_text()) if world_json.exists() else None,
        },
        "settings": {
            "sizes": args.sizes,
            "batch_size_and_k": SIZES[args.sizes],
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "threads": args.threads or "torch default",
            "seed": args.seed,
        },
        "changes": CHANGES,
        "load_before": load(),
    }
    try:
        if not args.skip_prep:
            link_world(world, Path(args.work))
            print("prep: the peer's data_preprocess.py", flush=True)
            report["preprocess"] = child(args, "prep")
            print(f"  {report['preprocess']['seconds']:.1f} s", flush=True)
        report["models"] = {}
        for name in args.models:
            if MODELS[name] is None:
                report["models"][name] = {"status": "not available", "why": UNAVAILABLE[name]}
                print(f"{name}: not available in the peer", flush=True)
                continue
            before = load()
            print(f"{name}: training the peer's {MODELS[name]}", flush=True)
            result = child(args, "train", "--model", name)
            result["load_before"], result["load_after"] = before, load()
            report["models"][name] = result
            print(
                f"  {result['samples_per_s']:.1f} samples/s (live {result['samples_per_s_live']:.1f}),"
                f" peak {result['peak_rss_gib']:.2f} GiB, loss finite {result['loss_finite']}",
                flush=True,
            )
    finally:
        report["load_after"] = load()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        if temporary:
            shutil.rmtree(args.work, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
