"""A whole optimizer step as one replayed CUDA graph, and the optimizer settings that such a graph reads.

A batch-256 LeNet step is some 60 small dependent kernels; launched one by one from Python they take longer than
their arithmetic on a GPU. A captured graph launches them as one (lenet_exp.many_steps uses it on CUDA).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from lenet_exp.errors import UserError, chain, first_line

Step = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (x, y) -> the step's loss and logits


# The device types whose steps lenet_exp captures, where Adam runs its capturable step.
CAPTURING = ("cuda",)


class DeviceHyperparameters:
    """The optimizer settings that a captured graph reads at each replay, held so that the capture reads no
    number back to the host (CUDA refuses that during a capture). ``plain`` gives a state dict with numbers
    again, so that a checkpoint loads into an eager run or a CPU too.

    - The learning rate is a device tensor; a schedule's value is copied into it by ``refresh``.
    - Adam's betas stay numbers, fixed in the graph, except beta1 when the schedule cycles it
      (``cycle_momentum`` of OneCycleLR and CyclicLR): then beta1 is a device tensor too, and Adam takes its
      single-tensor step. Its multi-tensor (``foreach``) step reads a tensor beta1 back to the host
      (``torch._foreach_lerp_`` takes a number), and both steps read a tensor beta2 back (``addcmul_``'s
      value): on an H100 with torch 2.11 (2026-12-06) such a capture failed with
      ``cudaErrorStreamCaptureUnsupported``. A schedule that changes a beta held as a number is refused.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, device: torch.device, cycled_beta1: bool = False) -> None:
        self.optimizer, self.held = optimizer, []
        capturable = torch.device(device).type in CAPTURING  # elsewhere (a test on the CPU) only the tensors
        self.given = [{key: group.get(key) for key in ("capturable", "foreach")} for group in optimizer.param_groups]
        for group in optimizer.param_groups:
            lr = torch.tensor(float(group["lr"]), device=device)
            beta1, beta2 = (float(b) for b in group["betas"])
            betas = (torch.tensor(beta1, device=device) if cycled_beta1 else beta1, beta2)
            group["lr"], group["betas"], group["capturable"] = lr, betas, capturable
            if capturable and not group.get("fused"):  # the multi-tensor step (fewer kernels) where it reads nothing
                group["foreach"] = not cycled_beta1
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
            if group["betas"] is betas:
                continue
            for i, (given, held) in enumerate(zip(group["betas"], betas, strict=True)):
                if isinstance(held, Tensor):
                    if given is not held:
                        held.fill_(given)
                elif given != held:
                    raise UserError(
                        f"model.cuda_graph=true captures Adam's betas[{i}]={held} as a fixed number, and the "
                        f"schedule changed it to {given}; set model.cuda_graph=false to schedule betas[{i}]."
                    )
            group["betas"] = betas

    def plain(self, state_dict: dict) -> dict:
        """A copy of ``state_dict`` (an optimizer's) with numbers for tensors, ``capturable`` and ``foreach`` as the
        optimizer was given them and Adam's step counts on the CPU (its per-parameter dicts are the live optimizer's
        own, so they are copied, not changed)."""
        groups = []
        for group, given in zip(state_dict["param_groups"], self.given, strict=True):
            group = {**group, "capturable": bool(given["capturable"]), "foreach": given["foreach"]}
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

    The last warm-up step runs under CUDA's sync debug mode "error": a step that waits for the GPU (reads a
    number back, say) cannot be captured, and is refused there, in one sentence, before a capture begins. A
    capture that fails anyway leaves the process's CUDA state damaged (its random generator, at least):
    that is one sentence too, and the process should end.
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
            last = self.eager == self.warmup - 1  # past the first step's lazy set-up
            with torch.cuda.stream(side), _waits_refused() if last else contextlib.nullcontext():
                outputs = self.step(x, y)
            torch.cuda.current_stream().wait_stream(side)
            self.eager += 1
            return outputs
        self.inputs = (x.clone(), y.clone())
        graph = torch.cuda.CUDAGraph()
        # Autocast's cache of cast weights must not outlive the capture (torch's CUDA-graph notes).
        autocast = torch.is_autocast_enabled("cuda")
        dtype = torch.get_autocast_dtype("cuda") if autocast else None
        stream = torch.cuda.current_stream()
        try:
            with torch.cuda.graph(graph), torch.autocast("cuda", dtype=dtype, enabled=autocast, cache_enabled=False):
                self.outputs = self.step(*self.inputs)
        except RuntimeError as error:  # torch.AcceleratorError too
            torch.cuda.set_stream(stream)  # a failed capture's end leaves its own stream current
            raise _not_captured(error, " (this process's CUDA state is damaged: start a new one)") from error
        self.graph = graph
        graph.replay()  # capturing ran nothing: this is the step of (x, y)
        return self._outputs()

    def _outputs(self) -> tuple[Tensor, Tensor]:
        loss, logits = self.outputs  # type: ignore[misc]
        return loss.clone(), logits.clone()


@contextlib.contextmanager
def _waits_refused() -> Iterator[None]:
    """CUDA's sync debug mode "error" (what a capture refuses, reported before one begins), then as it was; a
    step that waits is one sentence."""
    before = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    except RuntimeError as error:
        raise _not_captured(error) from error
    finally:
        torch.cuda.set_sync_debug_mode(before)


def _not_captured(error: BaseException, after: str = "") -> UserError:
    """The sentence for a step that cannot be captured, naming its first fault: ending a capture that failed
    raises an error of its own, whose context is the step's."""
    *_, cause = chain(error)
    return UserError(
        f"model.cuda_graph=true could not capture the training step as a CUDA graph ({first_line(cause)}){after}; "
        "set model.cuda_graph=false to train without the graph."
    )
