"""Many optimizer steps per Lightning training step, and on CUDA each step replayed as one CUDA graph.

Lightning spends about 2 ms of Python per ``training_step`` (hooks, the optimizer closure, progress
bookkeeping); a LeNet step on a GPU is a fraction of that. ``steps_per_call`` batches served at once
pay that cost once per call, and a captured graph launches a whole step's ~60 kernels as one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.utils.data import Sampler

from lenet_exp.runtime.checks import AUTO, EPOCH, check_steps_per_call

# steps_per_call=auto: on a CPU the value `make bench` measured fastest (docs/performance.md); on CUDA
# a whole epoch per call (None), where the Python of a call costs more than the arithmetic of a step.
CPU_DEFAULT = 16  # 0.90x the bare loop per epoch on a 2-core EPYC, 2026-12-01 (docs/performance.md)


def resolve(value: int | str, device: torch.device | str, world_size: int = 1) -> int | None:
    """The optimizer steps per call on ``device``: a number, or None for all of an epoch's (``epoch``).
    Under DDP (``world_size`` > 1) ``auto`` is 1: Lightning's DDP hooks expect one backward per step."""
    check_steps_per_call(value)
    if value == EPOCH:
        return None
    if value != AUTO:
        return int(value)
    if world_size > 1:
        return 1
    return None if torch.device(device).type == "cuda" else CPU_DEFAULT


class BatchGroups(Sampler[list[list[int]]]):
    """The batches of ``sampler`` in its order, ``steps_per_call`` full batches per item (None: every full
    batch of the epoch in one), and the short last batch, if any, as an item of its own: each item is a
    list of K equally long index lists, which the dataset turns into (K,B,...) tensors.

    ``sampler`` is kept as ``.sampler`` so that Lightning's ``set_epoch`` reaches it.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, steps_per_call: int | None) -> None:
        self.sampler, self.batch_size, self.steps_per_call = sampler, batch_size, steps_per_call

    @property
    def steps(self) -> int:
        """Optimizer steps per epoch: one per batch, the short last one included."""
        return math.ceil(len(self.sampler) / self.batch_size)

    def __len__(self) -> int:
        full, rest = divmod(len(self.sampler), self.batch_size)
        return (math.ceil(full / self.steps_per_call) if self.steps_per_call else min(full, 1)) + (rest > 0)

    def __iter__(self) -> Iterator[list[list[int]]]:
        indices, b = list(self.sampler), self.batch_size
        full = len(indices) // b * b
        per_call = (self.steps_per_call or max(full // b, 1)) * b
        for start in range(0, full, per_call):
            yield [indices[i : i + b] for i in range(start, min(start + per_call, full), b)]
        if full < len(indices):
            yield [indices[full:]]

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # type: ignore[attr-defined]


class DeviceHyperparameters:
    """The learning rate and Adam's betas of every param group held in device tensors, which a captured
    graph reads at each replay; a scheduler that writes plain numbers (OneCycleLR's momentum cycling
    writes ``betas``) is copied into them by ``refresh``. ``plain`` gives a state dict with numbers
    again, so that a checkpoint loads into an eager run or a CPU too.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        self.optimizer, self.held = optimizer, []
        capturable = torch.device(device).type == "cuda"  # elsewhere (a test on the CPU) only the tensors
        for group in optimizer.param_groups:
            lr = torch.tensor(float(group["lr"]), device=device)
            betas = tuple(torch.tensor(float(b), device=device) for b in group["betas"])
            group["lr"], group["betas"], group["capturable"] = lr, betas, capturable
            self.held.append((lr, betas))
            for param in group["params"]:  # Adam's step counts live on the device when capturable
                state = optimizer.state.get(param, {})
                if "step" in state:
                    state["step"] = state["step"].to(param.device, torch.float32)

    def refresh(self) -> None:
        """Copy numbers a scheduler wrote into the held tensors (a fill kernel each; no host sync)."""
        for group, (lr, betas) in zip(self.optimizer.param_groups, self.held, strict=True):
            if group["lr"] is not lr:
                lr.fill_(group["lr"])
                group["lr"] = lr
            if any(given is not held for given, held in zip(group["betas"], betas, strict=True)):
                for given, held in zip(group["betas"], betas, strict=True):
                    if given is not held:
                        held.fill_(given)
                group["betas"] = betas

    @staticmethod
    def plain(state_dict: dict, capturable: bool = False) -> dict:
        """A copy of ``state_dict`` (an optimizer's) with numbers for tensors and Adam's step counts on the
        CPU (its per-parameter dicts are the live optimizer's own, so they are copied, not changed)."""
        groups = []
        for group in state_dict["param_groups"]:
            group = {**group, "capturable": capturable}
            if isinstance(group.get("lr"), Tensor):
                group["lr"] = float(group["lr"])  # one host sync per checkpoint
            if "betas" in group:
                group["betas"] = tuple(float(b) for b in group["betas"])
            groups.append(group)
        state = {
            key: {**values, "step": values["step"].detach().to("cpu", torch.float32)} if "step" in values else values
            for key, values in state_dict["state"].items()
        }
        return {**state_dict, "state": state, "param_groups": groups}


class GraphedStep:
    """``step(x, y)``, one whole optimizer step that reads nothing back to the host, run eagerly for
    ``warmup`` steps (on a side stream, as capturing needs: Adam's state and cuBLAS are set up lazily),
    then captured once as a CUDA graph on static input buffers and replayed for every batch of that
    shape; a batch of another shape (the short last one) runs eagerly. Every call is one real step.
    """

    def __init__(self, step: Callable[[Tensor, Tensor], None], warmup: int = 2) -> None:
        self.step, self.warmup = step, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[Tensor, Tensor] | None = None
        self.eager = 0

    def __call__(self, x: Tensor, y: Tensor) -> None:
        if self.graph is not None:
            static_x, static_y = self.inputs  # type: ignore[misc]
            if x.shape != static_x.shape:
                return self.step(x, y)
            static_x.copy_(x)
            static_y.copy_(y)
            self.graph.replay()
            return None
        if self.eager < self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step(x, y)
            torch.cuda.current_stream().wait_stream(side)
            self.eager += 1
            return None
        self.inputs = (x.clone(), y.clone())
        graph = torch.cuda.CUDAGraph()
        # Autocast's cache of cast weights must not outlive the capture (torch's CUDA-graph notes).
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else None
        with torch.cuda.graph(graph), torch.autocast("cuda", dtype=dtype, enabled=autocast, cache_enabled=False):
            self.step(*self.inputs)
        self.graph = graph
        graph.replay()  # capturing ran nothing: this is the step of (x, y)
        return None
