"""A callback for the Trainer-argument tests: the gradient norm of every optimizer step, before and after
Lightning clips it (a helper, not a test)."""

import json
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback


def grad_norm(module: torch.nn.Module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))) if grads else 0.0


class GradSpy(Callback):
    """Writes ``path`` at the end of training: {"before": [...], "after": [...]}, one norm per optimizer step.

    Lightning calls on_before_optimizer_step before it clips; the clipped gradients stay in ``.grad`` until
    the next step's zero_grad, so on_train_batch_end of a batch that stepped sees them."""

    def __init__(self, path: str) -> None:
        self.path, self.before, self.after, self._steps = Path(path), [], [], 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.before.append(grad_norm(pl_module))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step > self._steps:  # this batch ended with an optimizer step
            self._steps = trainer.global_step
            self.after.append(grad_norm(pl_module))

    def on_train_end(self, trainer, pl_module) -> None:
        self.path.write_text(json.dumps({"before": self.before, "after": self.after}))
