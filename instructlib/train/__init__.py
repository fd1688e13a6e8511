"""Chapter 05: the supervised fine-tuning loop (see ``loop.py``)."""
from .loop import (History, TrainConfig, TrainResult, evaluate, load_checkpoint, masked_loss_sum,
                   resolve_precision, save_checkpoint, train, warmup_cosine)

__all__ = ["History", "TrainConfig", "TrainResult", "evaluate", "load_checkpoint", "masked_loss_sum",
           "resolve_precision", "save_checkpoint", "train", "warmup_cosine"]
