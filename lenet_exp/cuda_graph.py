"""A whole optimizer step as one replayed CUDA graph, and the optimizer settings that such a graph reads.

A batch-256 LeNet step is some 60 small dependent kernels; launched one by one from Python they take longer than
their arithmetic on a GPU. A captured graph launches them as one (lenet_exp.many_steps uses it on CUDA).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Step = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (x, y) -> the step's loss and logits


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
    def plain(state_dict: dict) -> dict:
        """A copy of ``state_dict`` (an optimizer's) with numbers for tensors, ``capturable`` off and Adam's step
        counts on the CPU (its per-parameter dicts are the live optimizer's own, so they are copied, not changed)."""
        groups = []
        for group in state_dict["param_groups"]:
            group = {**group, "capturable": False}
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
    shape; a batch of another shape (the short last one) runs eagerly. Every call is one real step, and
    returns that step's outputs (copies: the graph's own are overwritten by the next replay).
    """

    def __init__(self, step: Step, warmup: int = 2) -> None:
        self.step, self.warmup = step, warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[Tensor, Tensor] | None = None
        self.outputs: tuple[Tensor, Tensor] | None = None
        self.eager = 0

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.graph is not None:
            static_x, static_y = self.inputs  # type: ignore[misc]
            if x.shape != static_x.shape:
                return self.step(x, y)
            static_x.copy_(x)
            static_y.copy_(y)
            self.graph.replay()
            return self._outputs()
        if self.eager < self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                outputs = self.step(x, y)
            torch.cuda.current_stream().wait_stream(side)
            self.eager += 1
            return outputs
        self.inputs = (x.clone(), y.clone())
        graph = torch.cuda.CUDAGraph()
        # Autocast's cache of cast weights must not outlive the capture (torch's CUDA-graph notes).
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else None
        with torch.cuda.graph(graph), torch.autocast("cuda", dtype=dtype, enabled=autocast, cache_enabled=False):
            self.outputs = self.step(*self.inputs)
        self.graph = graph
        graph.replay()  # capturing ran nothing: this is the step of (x, y)
        return self._outputs()

    def _outputs(self) -> tuple[Tensor, Tensor]:
        loss, logits = self.outputs  # type: ignore[misc]
        return loss.clone(), logits.clone()
