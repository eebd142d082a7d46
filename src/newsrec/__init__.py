"""newsrec: neural news recommendation (NRMS and its baselines) with Lightning and Hydra."""

__version__ = "0.1.0"
