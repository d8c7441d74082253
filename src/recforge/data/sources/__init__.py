"""Dataset sources: the catalogue (official files, checksums, download) and one module per
dataset family that prepares raw tables and their schema from a local copy."""
