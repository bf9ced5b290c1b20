"""steps_per_call: many optimizer steps per Lightning training step train exactly what one step per call
trains (weights, metrics, TensorBoard curves, schedules, augmentation, EMA), stop and resume alike."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from conftest import TIMING, TINY, compose_config, load_checkpoint, scalars, write_fake_fashion_mnist
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from torch.utils._python_dispatch import TorchDispatchMode

from lenet_exp.errors import UserError
from lenet_exp.many_steps import BatchGroups, resolve
from lenet_exp.steps_per_call import CPU_DEFAULT, per_call
from lenet_exp.train import train

# 200 training images in batches of 16: 12 full batches and a short one of 8, 13 optimizer steps an epoch
STEPS = 13
CURVES = ("train/loss", "train/acc", "test/loss", "test/acc")
STOP = "test_steps_per_call.SigtermOnce"  # a callback of this file, which a checkpoint may name


@pytest.fixture(scope="module")
def data_200(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    write_fake_fashion_mnist(folder, n_train=200, n_test=32)
    return folder


def run(folder, data, *overrides):
    return train(compose_config(folder, [*TINY, "threads=1", f"data.data_dir={data}", *overrides]))


def assert_same_run(a, b, metrics_a, metrics_b, tolerance=1e-6, sums=None):
    """Equal weights (EMA included), optimizer and scheduler state, step count, and metrics and curves (to
    ``sums``, if given: the epoch metrics are float32 sums whatever the weights' precision)."""
    sums = tolerance if sums is None else sums
    first, second = (load_checkpoint(f / "checkpoints" / "last.ckpt", [STOP]) for f in (a, b))
    assert first["global_step"] == second["global_step"]
    weights, other = first["state_dict"], second["state_dict"]
    assert weights.keys() == other.keys()
    for key in weights:
        assert torch.allclose(weights[key].double(), other[key].double(), atol=tolerance, rtol=0), key
    moments = [first["optimizer_states"][0]["state"], second["optimizer_states"][0]["state"]]
    assert all(torch.allclose(moments[0][p]["exp_avg"], moments[1][p]["exp_avg"], atol=tolerance) for p in moments[0])
    assert first["lr_schedulers"] == second["lr_schedulers"]
    for key in metrics_a.keys() - set(TIMING):
        value = metrics_a[key]
        assert value == (pytest.approx(metrics_b[key], abs=sums) if isinstance(value, float) else metrics_b[key]), key
    for tag in CURVES:
        points, others = scalars(a, tag), scalars(b, tag)
        assert [s for s, _ in points] == [s for s, _ in others], tag
        assert [v for _, v in points] == pytest.approx([v for _, v in others], abs=sums), tag


@pytest.mark.parametrize(
    "options",
    # the book's in make test-fast; the other two a second or two more each, in make test
    [
        [],
        pytest.param(["experiment=lenet_modern"], marks=pytest.mark.slow),
        pytest.param(["model.ema_decay=0.9"], marks=pytest.mark.slow),
    ],
    ids=["book", "lenet_modern", "ema"],
)
def test_16_steps_per_call_train_the_weights_metrics_and_curves_of_one_step_per_call(tmp_path, data_200, options):
    one = run(tmp_path / "one", data_200, "trainer.max_epochs=2", "steps_per_call=1", *options)
    many = run(tmp_path / "many", data_200, "trainer.max_epochs=2", "steps_per_call=16", *options)
    assert load_checkpoint(tmp_path / "many" / "checkpoints" / "last.ckpt")["global_step"] == 2 * STEPS
    assert_same_run(tmp_path / "one", tmp_path / "many", one, many)


@pytest.mark.slow
def test_the_one_cycle_schedule_counts_optimizer_steps_not_calls(tmp_path, data_200):
    run(tmp_path, data_200, "experiment=lenet_modern", "trainer.max_epochs=2", "steps_per_call=5")
    scheduler = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["lr_schedulers"][0]
    assert scheduler["total_steps"] == 2 * STEPS and scheduler["last_epoch"] == 2 * STEPS


def test_batches_come_in_groups_in_the_samplers_order_with_the_short_batch_alone():
    groups = BatchGroups(range(200), batch_size=16, steps_per_call=5)
    calls = list(groups)
    assert [len(call) for call in calls] == [5, 5, 2, 1] == [len(call) for call in calls[:3]] + [1]
    assert len(groups) == 4 and groups.steps == STEPS
    assert torch.cat([call.flatten() for call in calls]).tolist() == list(range(200))
    assert [call.shape for call in calls] == [(5, 16), (5, 16), (2, 16), (1, 8)]
    assert calls[-1].tolist() == [list(range(192, 200))]
    whole = BatchGroups(range(200), batch_size=16, steps_per_call=None)  # a whole epoch per call
    assert [len(call) for call in whole] == [12, 1] and len(whole) == 2
    for steps in (5, None):  # fewer images than a batch holds: the short batch alone, not an empty call before it
        fewer = BatchGroups(range(10), batch_size=16, steps_per_call=steps)
        assert [call.tolist() for call in fewer] == [[list(range(10))]] and len(fewer) == 1 and fewer.steps == 1


@pytest.mark.slow
def test_a_batch_larger_than_the_data_trains_as_with_one_step_per_call(tmp_path, fake_data):
    """The 64 synthetic images in batches of 100, as data.batch_size=256 on a small folder of one's own: one short
    batch per epoch (with several steps per call, an empty call came first and the run ended in a traceback)."""
    settings = ["data.batch_size=100", "trainer.max_epochs=2"]
    many = run(tmp_path / "many", fake_data, *settings, "steps_per_call=16")
    one = run(tmp_path / "one", fake_data, *settings, "steps_per_call=1")
    assert many["epochs"] == one["epochs"] == 2
    assert_same_run(tmp_path / "one", tmp_path / "many", one, many)


def test_auto_is_16_on_a_cpu_and_1_where_a_trainer_argument_counts_or_needs_single_steps():
    assert per_call("auto", "cpu", {}) == 16 and per_call("auto", "cuda", {}) == 1
    assert per_call("auto", "cpu", {"ddp": True}) == 1
    defaults = {"limit_train_batches": 1.0, "val_check_interval": 1.0, "overfit_batches": 0.0, "max_steps": -1}
    assert per_call("auto", "cpu", {**defaults, "fast_dev_run": False, "accumulate_grad_batches": 1}) == 16
    counting = {"limit_train_batches": [5, 0.5, 1], "val_check_interval": [1, 0.5], "overfit_batches": [2]}
    counting |= {"fast_dev_run": [True], "log_every_n_steps": [1], "accumulate_grad_batches": [2]}
    counting |= {"gradient_clip_val": [0.5], "max_steps": [30]}
    for name, values in counting.items():
        for value in values:
            assert per_call("auto", "cpu", {name: value}) == 1, (name, value)
    # an explicit N: counted in calls where it can be, refused where it cannot
    assert per_call(4, "cpu", {"limit_train_batches": 2}) == 4 and per_call("epoch", "cpu", {}) is None
    for given, refusal in (
        ({"accumulate_grad_batches": 2}, r"^trainer.accumulate_grad_batches needs Lightning's automatic optimization"),
        ({"gradient_clip_val": 0.5}, r"^trainer.gradient_clip_val needs Lightning's automatic optimization"),
        ({"max_steps": 30}, r"^trainer.max_steps counts optimizer steps, which steps_per_call=4 takes several"),
    ):
        with pytest.raises(UserError, match=refusal):
            per_call(4, "cpu", given)
    with pytest.raises(UserError, match=r"^SigtermOnce.on_before_backward runs at every optimizer step"):
        per_call(4, "cpu", {}, {"SigtermOnce.on_before_backward": "runs at every optimizer step, so it needs"})
    # fast_dev_run: Lightning sets the Trainer's max_steps itself, which is not the user's max_steps
    assert resolve(4, pl.Trainer(fast_dev_run=True, accelerator="cpu", logger=False)) == 4


class SigtermOnce(Callback):
    """Sends this process SIGTERM as the second call of the second epoch starts (once per test session);
    notes the optimizer steps taken when that call ends (Lightning stops before the next call)."""

    sent = False
    steps_when_stopped: list[int] = []
    batch_hooks_per_call = True  # its batch_idx counts calls, as it means to

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == 1 and batch_idx == 1 and not SigtermOnce.sent:
            SigtermOnce.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.received_sigterm:
            SigtermOnce.steps_when_stopped.append(trainer.global_step)


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_sigterm_stops_at_the_end_of_the_call_and_the_resumed_run_is_exact(tmp_path, data_200):
    common = ["experiment=lenet_modern", "steps_per_call=4", "model.ema_decay=0.9"]
    full = run(tmp_path / "full", data_200, *common, "trainer.max_epochs=3")
    stopped = tmp_path / "stopped"
    # the same overrides for the stopped and the resumed run (ckpt_path aside): one TensorBoard folder
    common += [f"+callbacks.stop._target_={STOP}", f"trusted_targets=[{STOP}]", "trainer.max_epochs=3"]
    with pytest.raises(SystemExit) as stop:
        run(stopped, data_200, *common)
    assert stop.value.code == 143
    assert SigtermOnce.steps_when_stopped == [STEPS + 2 * 4]  # the whole second call of epoch 2 was taken
    last = stopped / "checkpoints" / "last.ckpt"
    assert load_checkpoint(last, [STOP])["global_step"] == STEPS  # the last completed epoch, 1
    resumed = run(stopped, data_200, *common, f"ckpt_path={last}")
    assert_same_run(tmp_path / "full", stopped, full, resumed)


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
@pytest.mark.parametrize("first, then", [(1, 16), (16, 1)])
def test_a_run_continued_with_another_steps_per_call_goes_on_counting_its_steps(tmp_path, data_200, first, then):
    """ckpt_path= of a run written with one step per call (before steps_per_call=auto), or the other way round:
    global_step, which seeds augmentation, goes on from the checkpoint's."""
    common = ["experiment=lenet_modern", "model.scheduler=null", "model.ema_decay=0.9"]  # augmented, by the step
    run(tmp_path / "whole", data_200, *common, "trainer.max_epochs=2", f"steps_per_call={first}")
    run(tmp_path / "part", data_200, *common, "trainer.max_epochs=1", f"steps_per_call={first}")
    part = tmp_path / "part" / "checkpoints" / "last.ckpt"
    continued = tmp_path / "continued"
    run(continued, data_200, *common, "trainer.max_epochs=2", f"steps_per_call={then}", f"ckpt_path={part}")
    whole, other = (load_checkpoint(f / "checkpoints" / "last.ckpt") for f in (tmp_path / "whole", continued))
    assert other["global_step"] == whole["global_step"] == 2 * STEPS
    for key, value in whole["state_dict"].items():
        assert torch.allclose(value.double(), other["state_dict"][key].double(), atol=1e-6, rtol=0), key


@pytest.mark.parametrize("steps", ["auto", "1"])
@pytest.mark.slow
def test_a_one_cycle_run_continued_past_its_schedules_end_is_one_sentence(tmp_path, data_200, steps):
    """Lightning restores the schedule with the weights, OneCycleLR with its first run's length: trainer.max_epochs
    raised over ckpt_path= (as docs/resume-and-evaluate.md does for the book's model) ended in PyTorch's ValueError
    inside Hydra's traceback at the first step past it."""
    common = ["model=lenet_modern", f"steps_per_call={steps}"]
    run(tmp_path / "first", data_200, *common, "trainer.max_epochs=1")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    says = rf"^ckpt_path={last} holds a OneCycleLR schedule over the {STEPS} optimizer steps of the run that wrote it"
    with pytest.raises(UserError, match=rf"{says}, .* this run would take {2 * STEPS}\. Go on with that run's"):
        run(tmp_path / "longer", data_200, *common, "trainer.max_epochs=2", f"ckpt_path={last}")
    assert not (tmp_path / "longer" / "checkpoints").exists()


@pytest.mark.slow
def test_several_steps_per_call_with_ddp_are_refused_in_one_sentence(tmp_path, data_200):
    says = r"^steps_per_call=4 does not work under DDP \(a ddp strategy, even of one process, or several processes"
    with pytest.raises(UserError, match=says):
        run(tmp_path, data_200, "trainer=ddp_cpu", "steps_per_call=4")
    with pytest.raises(UserError, match=says):  # one process of Lightning's DDP (it said "several processes")
        run(tmp_path, data_200, "trainer.strategy=ddp_spawn", "steps_per_call=4")
    with pytest.raises(UserError, match=r"^steps_per_call=0 is not a whole number >= 1, epoch or auto"):
        run(tmp_path, data_200, "steps_per_call=0")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_an_optimizer_that_needs_a_closure_trains_one_step_per_call_under_auto(tmp_path, data_200):
    """torch.optim.LBFGS evaluates the loss again inside its step (a closure), which several steps per call do not
    give: auto takes Lightning's own steps for it (an explicit N is refused: test_errors.py)."""
    lbfgs = ["model.optimizer._target_=torch.optim.LBFGS", "model.optimizer.lr=0.1", "trainer.max_epochs=1"]
    lbfgs.append("+model.optimizer.max_iter=2")  # 2 evaluations of the closure per step, not LBFGS's 20
    metrics = run(tmp_path, data_200, *lbfgs)  # steps_per_call=auto, on the CPU
    steps = load_checkpoint(tmp_path / "checkpoints" / "last.ckpt", [STOP])["global_step"]
    assert metrics["epochs"] == 1 and steps == -(-200 // 16)  # one optimizer step per batch


def counting_callbacks():
    return [
        ModelCheckpoint(every_n_train_steps=10),
        LearningRateMonitor(logging_interval="step"),
        LearningRateMonitor(),
    ]


@pytest.mark.parametrize("callback", counting_callbacks(), ids=["checkpoint_every_10", "lr_per_step", "lr_default"])
def test_a_callback_that_counts_optimizer_steps_makes_auto_one_step_per_call(callback):
    """Lightning's global_step moves by a call's steps at once: a checkpoint every 10 steps was kept only where a call
    ended on a multiple of 10, a learning rate per step was logged per 50 calls (one point in 939 steps)."""
    quiet = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    assert resolve("auto", pl.Trainer(callbacks=[callback], **quiet)) == 1
    with pytest.raises(
        UserError, match=r"(counts|logs at) optimizer steps, so it needs .* which steps_per_call=4 replaces"
    ):
        resolve(4, pl.Trainer(callbacks=[callback], **quiet))
    by_epoch = [ModelCheckpoint(), LearningRateMonitor(logging_interval="epoch")]
    assert resolve("auto", pl.Trainer(callbacks=by_epoch, **quiet)) == CPU_DEFAULT


@pytest.mark.slow
def test_a_checkpoint_every_n_steps_is_kept_at_every_nth_step_under_auto(tmp_path, data_200):
    every = "+callbacks.every={_target_: pytorch_lightning.callbacks.ModelCheckpoint, every_n_train_steps: 4, "
    every += "save_top_k: -1, filename: '{step}'}"
    # 13 steps an epoch; in the second, the step each file is named after was the epoch lenet_exp logged for its
    # loggers (step=0.ckpt, each replacing the last): lenet_exp logs no step of its own
    run(tmp_path, data_200, "trainer.max_epochs=2", every)
    kept = sorted((p.name for p in (tmp_path / "checkpoints").glob("step=*.ckpt")), key=lambda name: int(name[5:-5]))
    assert kept == [f"step={n}.ckpt" for n in range(4, 27, 4)], kept


SWA = ["+callbacks.swa._target_=pytorch_lightning.callbacks.StochasticWeightAveraging", "+callbacks.swa.swa_lrs=0.01"]
ACCUMULATE = "+callbacks.gas={_target_: pytorch_lightning.callbacks.GradientAccumulationScheduler, scheduling: {0: 2}}"


@pytest.mark.slow  # 2-3 s
def test_lightnings_swa_trains_under_auto_as_with_one_step_per_call(tmp_path, data_200):
    """StochasticWeightAveraging swaps in a schedule that Lightning steps once per epoch; several steps per call
    stepped it at every optimizer step, which trained another run from the first epoch without a word."""
    folders = [tmp_path / "auto", tmp_path / "1"]  # named by their steps_per_call
    runs = [run(f, data_200, "trainer.max_epochs=2", f"steps_per_call={f.name}", *SWA) for f in folders]
    first, second = (load_checkpoint(f / "checkpoints" / "last.ckpt") for f in folders)  # SWA: no trust= needed
    assert first["global_step"] == second["global_step"] == 2 * STEPS
    assert all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])
    assert runs[0]["train_loss"] == runs[1]["train_loss"]


@pytest.mark.parametrize(
    ("callback", "sentence"),
    [
        (SWA, "StochasticWeightAveraging steps its learning-rate schedule per epoch, so it needs Lightning's"),
        ([ACCUMULATE], "GradientAccumulationScheduler accumulates gradients, so it needs Lightning's"),
    ],
    ids=["swa", "accumulation"],
)
def test_lightnings_callbacks_that_change_its_optimization_are_refused_with_several_steps(
    tmp_path, data_200, callback, sentence
):
    with pytest.raises(UserError, match=rf"^{sentence} automatic optimization, which steps_per_call=4 replaces; use"):
        run(tmp_path / "four", data_200, "steps_per_call=4", *callback)
    assert not (tmp_path / "four" / "checkpoints").exists()


class CountsBatches(Callback):
    """A callback of one's own that records the shape of each training batch it is given (in ``SEEN``)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        SEEN.append(tuple(batch[0].shape))


SEEN: list[tuple[int, ...]] = []
COUNTS = "+callbacks.counts._target_=test_steps_per_call.CountsBatches"


@pytest.mark.slow
def test_a_callback_of_ones_own_with_batch_hooks_sees_every_batch_under_auto(tmp_path, data_200):
    """Under auto it was called once per call of up to 16 steps, with the batches stacked (K, B, 1, 28, 28); an
    explicit number of steps per call is refused."""
    SEEN.clear()
    run(tmp_path / "auto", data_200, "trainer.max_epochs=1", COUNTS)
    assert len(SEEN) == STEPS and all(len(shape) == 4 for shape in SEEN), SEEN
    says = r"^CountsBatches.on_train_batch_end runs at every batch, so it needs Lightning's automatic optimization"
    with pytest.raises(UserError, match=says):
        run(tmp_path / "four", data_200, "trainer.max_epochs=1", "steps_per_call=4", COUNTS)


@pytest.mark.slow  # 2-3 s
def test_lightnings_accumulation_schedule_trains_under_auto(tmp_path, data_200):
    metrics = run(tmp_path, data_200, "trainer.max_epochs=1", ACCUMULATE)  # was Lightning's RuntimeError
    assert metrics["epochs"] == 1


@pytest.mark.parametrize(("value", "shown"), [(0, "0"), (-1, "-1"), (2.5, "2.5"), ("fast", "'fast'"), (True, "true")])
def test_the_python_api_refuses_a_wrong_steps_per_call_when_the_data_module_is_built(value, shown):
    from lenet_exp.data import FashionMNIST

    # the value as a config types it (true, not True), since the sentence names the config's key
    with pytest.raises(UserError, match=rf"^steps_per_call={shown} is not a whole number >= 1, epoch or auto"):
        FashionMNIST(steps_per_call=value)


class NoHostReads(TorchDispatchMode):
    """Fails any operation that reads a tensor's number back to the host (``.item()``, ``float(t)``, a tensor
    given where an operator takes a number): on CUDA that is a sync, which a graph capture refuses."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            raise AssertionError("the captured step read a number back to the host, which a CUDA graph refuses")
        return func(*args, **(kwargs or {}))


def captured(step):
    """GraphedStep's stand-in on the CPU: the step that a graph would capture, run as it is, reading nothing
    back to the host."""

    def run(x, y):
        with NoHostReads():
            return step(x, y)

    return run


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_the_graph_paths_step_run_eagerly_on_the_cpu_trains_what_one_step_per_call_trains(
    tmp_path, data_200, monkeypatch
):
    """What the CUDA graph captures (lenet_exp.cuda_graph.GraphedStep replays it; that needs a GPU, see
    tests/test_gpu.py), run here as it is: Adam's capturable step (as on CUDA) with the learning rate (and a
    cycled beta1) in tensors that the schedule is copied into, reading no number back to the host (which a
    capture refuses), the metric sums and step counter on the device, plain checkpoints.

    In float32 those tensors round lr and betas to float32 (a relative 5e-8), and 26 Adam steps of the sigmoid
    net amplify that to differences of 2e-6 with AVX2's kernels and 1.5e-4 with AVX-512's: no tolerance
    follows from that. In float64 (trainer.precision=64-true, where Lightning makes the held tensors float64
    too) the two paths do the same arithmetic, so they must agree to float64's rounding: 1e-10 leaves a
    10^6 margin over its 1e-16 even after the same amplification. The epoch metrics stay float32 sums, which
    the graph path adds per call first: they agree to float32's rounding of a 2.3 sum of 26 terms, 1e-6."""
    from torch.optim import adam

    from lenet_exp import cuda_graph, many_steps

    for_fit = many_steps.ManySteps.for_fit.__func__

    def graph_on_the_cpu(cls, module, cuda_graph):
        made = for_fit(cls, module, cuda_graph)
        if made is not None:
            made.graph = True
        return made

    monkeypatch.setattr(many_steps.ManySteps, "for_fit", classmethod(graph_on_the_cpu))
    monkeypatch.setattr(many_steps, "GraphedStep", captured)
    monkeypatch.setattr(cuda_graph, "CAPTURING", ("cuda", "cpu"))  # Adam's capturable step, as on CUDA
    monkeypatch.setattr(adam, "_get_capturable_supported_devices", lambda supports_xla=True: ["cuda", "cpu"])
    options = ["trainer.max_epochs=2", "trainer.precision=64-true"]
    one = run(tmp_path / "one", data_200, *options, "steps_per_call=1")
    graph = run(tmp_path / "graph", data_200, *options, "steps_per_call=epoch")
    assert_same_run(tmp_path / "one", tmp_path / "graph", one, graph, tolerance=1e-10, sums=1e-6)
    # with a schedule (and its momentum cycling: beta1 held in a tensor) and augmentation: the same steps,
    # learning rates and betas (the weights of this BatchNorm net drift apart by a float32 rounding's
    # amplification, ~1e-2)
    options = ["experiment=lenet_modern", "trainer.max_epochs=2"]
    run(tmp_path / "modern_one", data_200, *options, "steps_per_call=1")
    run(tmp_path / "modern_graph", data_200, *options, "steps_per_call=epoch")
    eager, graphed = (
        load_checkpoint(tmp_path / r / "checkpoints" / "last.ckpt") for r in ("modern_one", "modern_graph")
    )
    assert eager["global_step"] == graphed["global_step"] == 2 * STEPS
    assert eager["lr_schedulers"] == graphed["lr_schedulers"]
    group, plain = (c["optimizer_states"][0]["param_groups"][0] for c in (graphed, eager))
    assert isinstance(group["lr"], float) and group["lr"] == pytest.approx(plain["lr"], rel=1e-6)
    assert all(isinstance(b, float) for b in group["betas"]) and group["betas"] == pytest.approx(plain["betas"])
    assert group["capturable"] is False and group["foreach"] == plain["foreach"]  # as the optimizer was given


def test_a_schedule_that_changes_a_beta_the_graph_holds_fixed_is_one_sentence():
    """A beta held as a number is fixed in the captured graph: a schedule that changes it is refused, not
    silently ignored."""
    from lenet_exp.cuda_graph import DeviceHyperparameters

    net = torch.nn.Linear(2, 1)
    optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
    held = DeviceHyperparameters(optimizer, torch.device("cpu"))
    optimizer.param_groups[0]["lr"] = 0.05  # a schedule's new learning rate is copied into the held tensor
    held.refresh()
    assert float(optimizer.param_groups[0]["lr"]) == pytest.approx(0.05)
    optimizer.param_groups[0]["betas"] = (0.8, 0.999)
    with pytest.raises(UserError, match=r"captures Adam's betas\[0\]=0.9 as a fixed number, and the schedule"):
        held.refresh()


class FakeCuda:
    """What GraphedStep asks of torch.cuda, on a machine without CUDA: streams (the current one a name), the sync
    debug mode, and a capture that fails as CUDA's does (ending it raises an error of its own, and leaves the
    capture's stream current)."""

    def __init__(self, monkeypatch):
        self.mode, self.current = "default", "main"
        for name in ("Stream", "stream", "current_stream", "set_stream", "CUDAGraph", "graph"):
            monkeypatch.setattr(torch.cuda, name, getattr(self, name))
        monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: self.mode)
        monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", lambda mode: setattr(self, "mode", mode))

    def Stream(self):  # noqa: N802 (torch's names)
        return SimpleNamespace(wait_stream=lambda other: None)

    @contextmanager
    def stream(self, stream):
        yield

    def current_stream(self):
        return SimpleNamespace(name=self.current, wait_stream=lambda other: None)

    def set_stream(self, stream):
        self.current = stream.name

    def CUDAGraph(self):  # noqa: N802
        return object()

    @contextmanager
    def graph(self, graph):
        self.current = "capture"
        try:
            yield
        except RuntimeError:
            raise RuntimeError("CUDA error: operation failed due to a previous error during capture") from None
        self.current = "main"


def test_a_step_that_cannot_be_captured_is_one_sentence_naming_the_first_fault(monkeypatch):
    """A step that waits for the GPU is refused in the last warm-up step, under CUDA's sync debug mode "error",
    before any capture (the mode is restored after); a capture that fails anyway (a host read CUDA reports only
    then) is one sentence naming the fault inside the step, not CUDA's follow-up error on ending the capture,
    and leaves the stream current that was."""
    from lenet_exp import cuda_graph

    cuda = FakeCuda(monkeypatch)
    steps = []

    def waits(x, y):
        steps.append(cuda.mode)
        if cuda.mode == "error":
            raise RuntimeError("called a synchronizing CUDA operation")
        return x, y

    graphed = cuda_graph.GraphedStep(waits, warmup=2)
    graphed(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(UserError) as raised:
        graphed(torch.zeros(2, 1), torch.zeros(2))
    assert steps == ["default", "error"] and cuda.mode == "default"
    assert str(raised.value) == (
        "model.cuda_graph=true could not capture the training step as a CUDA graph (called a synchronizing CUDA "
        "operation); set model.cuda_graph=false to train without the graph."
    )

    def reads_back(x, y):
        if cuda.current == "capture":
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing\nSearch for ...")
        return x, y

    graphed = cuda_graph.GraphedStep(reads_back, warmup=2)
    for _ in range(2):
        graphed(torch.zeros(2, 1), torch.zeros(2))
    with pytest.raises(UserError) as raised:
        graphed(torch.zeros(2, 1), torch.zeros(2))
    assert str(raised.value) == (
        "model.cuda_graph=true could not capture the training step as a CUDA graph (CUDA error: operation not "
        "permitted when stream is capturing) (this process's CUDA state is damaged: start a new one); "
        "set model.cuda_graph=false to train without the graph."
    )
    assert cuda.current == "main"
