"""How a trained model is judged: the official per-impression metrics (`metrics`), the
beyond-accuracy metrics of its lists (`beyond`), the leaderboard's submission file
(`submission`), scoring a submission against the hidden clicks (`score`), and the prediction
of an unlabeled split (`predict`)."""
