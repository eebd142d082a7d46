"""What a run shows its user: quiet library logs (`quiet`), the model summary (`summary`),
training progress in a terminal or a log file (`progress`) and hints for mistyped overrides
(`hints`)."""
