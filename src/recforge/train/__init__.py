"""Training: the loop (Trainer), optimizers and seeding, kept apart from the models."""

from recforge.train.trainer import Trainer, plot_history, resolve_device, seed_everything

__all__ = ["Trainer", "plot_history", "resolve_device", "seed_everything"]
