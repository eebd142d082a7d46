"""A mistyped override gets the nearest valid key suggested, after Hydra's own message.

    python train.py trainer.max_epoch=1
    Could not override 'trainer.max_epoch'.            <- Hydra
    To append to your config use +trainer.max_epoch=1
    ...
    did you mean trainer.max_epochs? (trainer.max_epoch is not a key of train.yaml;  <- here
    `python train.py --cfg job` prints them all)

train.py, eval.py and recommend.py run their Hydra main inside `suggest_on_bad_override`.
Only a command that stopped before its task started is looked at (Hydra could not compose
the config); the config is then composed again without the unknown keys to find their
nearest neighbours.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from collections.abc import Iterator

from omegaconf import DictConfig, OmegaConf

# Hydra's command-line flags that take a value (the value is not an override).
_FLAGS_WITH_VALUE = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir"}
_FLAGS_WITH_VALUE |= {"--info", "-i", "--package", "-p", "--experimental-rerun"}


@contextlib.contextmanager
def suggest_on_bad_override(config_name: str) -> Iterator[None]:
    """Run a Hydra main; if it exits with an error before its task started, print the
    nearest valid key of each override key that the config does not have."""
    import newsrec.cli

    try:
        yield
    except SystemExit as stop:
        if stop.code not in (0, None) and not newsrec.cli.task_started:
            for line in suggestions(config_name, sys.argv[1:]):
                print(line, file=sys.stderr, flush=True)
        raise


def overrides(argv: list[str]) -> list[str]:
    """The `key=value` overrides of a command line (flags and their values left out)."""
    found, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word in _FLAGS_WITH_VALUE:
            skip = True
        elif not word.startswith("-") and "=" in word:
            found.append(word)
    return found


def suggestions(config_name: str, argv: list[str]) -> list[str]:
    """A "did you mean ...?" line for each override whose key the config lacks."""
    items = [o.split("=", 1)[0] for o in overrides(argv)]
    groups = []
    for item in overrides(argv):
        key, value = item.split("=", 1)
        if _is_group(key) and "(" not in value:  # a sweep's first choice: `model=nrms,npa`
            groups.append(f"{key}={value.split(',')[0]}")
    try:
        cfg = _compose(config_name, groups)
    except Exception:  # a group choice is what failed: Hydra's message lists the options
        return []
    known = _keys(cfg)
    lines = []
    for key in items:
        key = key.lstrip("+~")
        if key.startswith("hydra.") or _is_group(key) or key in known:
            continue
        guess = nearest(key, known)
        if guess:
            lines.append(
                f"did you mean {guess}? ({key} is not a key of {config_name}.yaml; "
                f"`python {config_name}.py --cfg job` prints them all)"
            )
    return lines


def nearest(key: str, known: set[str]) -> str | None:
    """The known key closest to `key`: first among its siblings, then among all keys."""
    parent, _, leaf = key.rpartition(".")
    siblings = sorted(k for k in known if k.rpartition(".")[0] == parent)
    by_leaf = {k.rpartition(".")[2]: k for k in siblings}
    match = difflib.get_close_matches(leaf, list(by_leaf), n=1, cutoff=0.6)
    if match:
        return by_leaf[match[0]]
    match = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
    return match[0] if match else None


def _is_group(key: str) -> bool:
    from newsrec.config import CONF_DIR

    key = key.lstrip("+~")
    return "/" in key or (CONF_DIR / key).is_dir()


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from newsrec.config import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=overrides)


def _keys(cfg: DictConfig) -> set[str]:
    """Every dotted key of `cfg` (nodes and leaves), values unresolved."""
    keys: set[str] = set()

    def walk(node, prefix: str) -> None:
        if not isinstance(node, dict):
            return
        for name, value in node.items():
            keys.add(prefix + str(name))
            walk(value, f"{prefix}{name}.")

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return keys
