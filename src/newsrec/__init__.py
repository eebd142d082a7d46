"""newsrec: neural news recommendation (NRMS and its baselines) with Lightning and Hydra.

`newsrec.load(checkpoint, news=...)` gives a trained model that recommends by MIND ids
(newsrec.serving.api); it is imported on first use, so `import newsrec.<module>` stays light.
"""

__version__ = "0.1.0"
__all__ = ["load"]


def __getattr__(name: str):
    if name == "load":
        from newsrec.serving.api import load

        return load
    raise AttributeError(f"module 'newsrec' has no attribute {name!r}")
