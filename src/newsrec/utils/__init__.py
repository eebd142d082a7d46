"""Small helpers shared across newsrec: atomic writes, Rich progress bars, ragged arrays."""
