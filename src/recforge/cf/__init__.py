"""Collaborative filtering over the user-item matrix: sparse row batching, implicit-feedback
training data with per-epoch negatives, the AutoRec training loop, the rating and top-K
evaluation protocols (leave-one-out with sampled negatives, full ranking) and ``recommend``."""
