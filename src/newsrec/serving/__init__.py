"""What a trained model is for beyond its metrics: ranking (`ranking`), recommend.py's top-k
lists (`recommend`), recommendations by MIND id from Python (`api`, `newsrec.load`), vectors
for an ANN index or TensorBoard (`export`), and pictures of what it attends to (`visualize`)."""
