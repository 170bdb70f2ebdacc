"""The one training loop (:func:`fit`: shuffled mini-batches, validation accuracy after every
epoch, the first best epoch's weights kept, optional early stopping), used by end-to-end
fine-tuning (:func:`cbirlib.learning.train.fine_tune`) and by linear heads on features
(:func:`fit_linear_head`: head-only classification, Algorithm 3's quantization-aware fine-tuning,
key-aware models). Seeded: the same inputs give the same weights on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm


def batches(n: int, batch_size: int, generator: torch.Generator | None) -> Iterator[torch.Tensor]:
    """Index batches over range(n): shuffled by ``generator``, in order when it is None."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for s in range(0, n, batch_size):
        yield order[s:s + batch_size]


@dataclass
class Fit:
    history: pd.DataFrame  # epoch, train_loss, val_accuracy
    best_epoch: int
    stopped_early: bool


def fit(module: nn.Module, optimizer: torch.optim.Optimizer, loss_on: Callable[[torch.Tensor], torch.Tensor],
        n_train: int, batch_size: int, predict_val: Callable[[], np.ndarray], y_val: np.ndarray, epochs: int,
        seed: int, patience: int | None = None, progress: bool = False, desc: str = "epochs",
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> Fit:
    """Train ``module`` for up to ``epochs`` epochs of shuffled mini-batches (``loss_on(index
    batch)`` returns the batch's mean loss), evaluate the validation accuracy after each, keep the
    weights of the first epoch with the best one, and stop early after ``patience`` epochs without
    improvement; ``scheduler`` steps after every optimizer step. The module ends with the kept
    weights, in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    history, best = [], (-1.0, 0, None)
    stopped = False
    for epoch in tqdm(range(1, epochs + 1), desc=desc, leave=False, disable=not progress):
        module.train()
        total = 0.0
        for idx in batches(n_train, batch_size, gen):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_on(idx)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += loss.item() * len(idx)
        module.eval()
        val_acc = float((predict_val() == y_val).mean())
        history.append(dict(epoch=epoch, train_loss=total / n_train, val_accuracy=val_acc))
        if val_acc > best[0]:
            best = (val_acc, epoch, {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()})
        elif patience is not None and epoch - best[1] >= patience:
            stopped = True
            break
    module.load_state_dict(best[2])
    return Fit(pd.DataFrame(history), best[1], stopped)


class LinearHead(nn.Module):
    """A linear classifier whose weight can pass through ``weight_transform`` (e.g. fake int8
    quantization with a straight-through gradient, for quantization-aware fine-tuning)."""

    def __init__(self, in_features: int, num_classes: int, weight_transform=None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)
        self.weight_transform = weight_transform

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        w = self.linear.weight if self.weight_transform is None else self.weight_transform(self.linear.weight)
        return nn.functional.linear(z, w, self.linear.bias)


def fit_linear_head(z: dict[str, torch.Tensor], y: dict[str, np.ndarray], epochs: int, batch_size: int,
                    lr: float, seed: int, init: LinearHead | None = None, weight_transform=None,
                    patience: int | None = None, progress: bool = False) -> tuple[LinearHead, pd.DataFrame, int]:
    """Adam + cross-entropy on features ``z["train"]`` through :func:`fit`. ``init`` starts from
    an existing head (fine-tuning); ``weight_transform`` applies in the forward pass. Returns
    (head, history, best epoch)."""
    torch.manual_seed(seed)
    head = LinearHead(z["train"].shape[1], int(max(y["train"].max(), y["val"].max())) + 1, weight_transform)
    if init is not None:
        head.linear.load_state_dict(init.linear.state_dict())
    y_train = torch.as_tensor(y["train"])
    loss_fn = nn.CrossEntropyLoss()

    def predict_val() -> np.ndarray:
        with torch.no_grad():
            return head(z["val"]).argmax(1).numpy()

    out = fit(head, torch.optim.Adam(head.parameters(), lr=lr), lambda idx: loss_fn(head(z["train"][idx]), y_train[idx]),
              len(y_train), batch_size, predict_val, y["val"], epochs, seed, patience, progress)
    return head.eval(), out.history, out.best_epoch


def standardise(feats: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Standardise features with the training split's mean and std; a feature that is constant
    on the training split (e.g. a ReLU channel that never fires) keeps std 1, so unseen values
    are not blown up by a division by ~0."""
    mean, std = feats["train"].mean(0), feats["train"].std(0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return {s: (f - mean) / std for s, f in feats.items()}, mean, std
