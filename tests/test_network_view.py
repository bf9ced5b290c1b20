"""Inside the network in TensorBoard: histograms, per-layer curves, graph, PR curves and projector, read back with
TensorBoard's own readers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY, apply, compose_config, event_dir, real_data, write_fake_fashion_mnist
from omegaconf import OmegaConf
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from lenet_exp.errors import UserError
from lenet_exp.models import LeNet
from lenet_exp.network_view import (
    CHARTS,
    _probe,
    check_projector_configs,
    histogram,
    layer_names,
    main,
    measure,
    read_projector_config,
)
from lenet_exp.runtime.run_folder import PROJECTOR, PROJECTOR_CONFIG
from lenet_exp.train import train

LAYERS = ["conv1", "conv2", "linear1", "linear2", "linear3"]
ACTIVATED = LAYERS[:-1]  # the last linear layer has no activation
TWO_EPOCHS = [*TINY, "trainer.max_epochs=2"]


def events(run: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(event_dir(run)), size_guidance={"histograms": 0, "tensors": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def _normal(n: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(n))  # the same values whatever ran before


@pytest.mark.parametrize(
    "values",
    [_normal(300_000), torch.full((1000,), 3.0), _normal(50) * 1e-3 + 7, torch.tensor([0.0, 1.0, 1.0, 1.0])],
    ids=["spread", "one value", "narrow", "few"],
)
def test_histograms_are_the_ones_add_histogram_stores(values):
    # computed in torch, they must be what TensorBoard's NumPy histogram gives for the same values and bins
    from torch.utils.tensorboard.summary import make_histogram

    ours, theirs = histogram(values, bins=64), make_histogram(values.numpy(), bins=64)
    assert ours["num"] == theirs.num == values.numel() == sum(ours["bucket_counts"]) == sum(theirs.bucket)
    assert len(ours["bucket_counts"]) == len(theirs.bucket)
    # Only a value within rounding of an edge between two bins may fall on the other side of it (NumPy bins
    # float32 values, these float64 ones): each such value moves one count to the neighbouring bin.
    span = max(theirs.max - theirs.min, 1.0)  # NumPy's edges are float32 numbers
    inner = torch.tensor(theirs.bucket_limit[:-1], dtype=torch.float64)
    on_edges = int(((values.double()[:, None] - inner).abs() <= 1e-6 * span).any(1).sum())
    moved = sum(abs(a - b) for a, b in zip(ours["bucket_counts"], theirs.bucket, strict=True))
    assert moved <= 2 * on_edges, (moved, on_edges)
    assert ours["bucket_limits"] == pytest.approx(list(theirs.bucket_limit), rel=1e-6, abs=1e-6 * span)
    assert (ours["min"], ours["max"]) == (theirs.min, theirs.max)
    assert ours["sum"] == pytest.approx(theirs.sum, rel=1e-4, abs=1e-3)
    assert ours["sum_squares"] == pytest.approx(theirs.sum_squares, rel=1e-4)


def steps(accumulator: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in accumulator.Scalars(tag)]


@pytest.fixture(scope="module")
def sigmoid_run(tmp_path_factory) -> Path:
    """The book's sigmoid net, 2 epochs on 64 synthetic images, tested on 32."""
    folder = tmp_path_factory.mktemp("sigmoid")
    write_fake_fashion_mnist(folder / "data")
    train(compose_config(folder / "run", [*TWO_EPOCHS, f"data.data_dir={folder / 'data'}"]))
    return folder / "run"


def test_a_default_run_fills_histograms_per_layer_curves_graph_and_pr_curves(sigmoid_run):
    ev = events(sigmoid_run)
    params = [f"{layer}.{kind}" for layer in LAYERS for kind in ("weight", "bias")]
    histograms = [*(f"weights/{p}" for p in params), *(f"gradients/{p}" for p in params)]
    histograms += [f"activations/{layer}" for layer in ACTIVATED]
    assert sorted(ev.Tags()["histograms"]) == sorted(histograms)
    for tag in histograms:
        assert [e.step for e in ev.Histograms(tag)] == [0, 1], tag  # the epoch, from 0, as every curve's step
    conv1 = ev.Histograms("weights/conv1.weight")[-1].histogram_value
    assert conv1.num == 6 * 1 * 5 * 5
    assert (
        ev.Histograms("activations/conv1")[0].histogram_value.num == 64 * 6 * 24 * 24
    )  # the 64 training images (probe_images: 256)
    for layer in LAYERS:
        assert steps(ev, f"grad_mean_abs/{layer}") == [0, 1]
    for layer in ACTIVATED:
        shares = [e.value for e in ev.Scalars(f"saturated/{layer}")]
        assert len(shares) == 2 and all(0 <= s <= 1 for s in shares)
    assert not [tag for tag in ev.Tags()["scalars"] if tag.startswith("dead/")]  # no ReLU here
    assert ev.Tags()["graph"]
    graph = ev.Graph()
    assert any("Conv2d" in node.name or "conv" in node.op.lower() for node in graph.node)
    pr_tags = [tag for tag in ev.Tags()["tensors"] if tag.startswith("pr/")]
    assert len(pr_tags) == 10 and "pr/T-shirt_top" in pr_tags
    (curve,) = ev.Tensors("pr/Bag")
    assert curve.step == 2  # beside the final test's scalars: the number of epochs trained
    counts = torch.tensor(curve.tensor_proto.float_val).view(6, -1)  # TP, FP, TN, FN, precision, recall
    assert counts.shape[1] == 127
    assert counts[0, 0] + counts[1, 0] == 32  # every test image counted once, at threshold 0
    assert counts[0, 0] == 3  # 32 images, classes i % 10: three bags
    (config,) = ev.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    charts = [chart.title for category in layout.category for chart in category.chart]
    assert charts == [CHARTS["grad_mean_abs"], CHARTS["saturated"]]  # no empty chart of dead ReLU units


def test_the_projector_files_load_from_any_folder_the_run_is_copied_to(sigmoid_run, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(sigmoid_run, copy)
    folder = event_dir(copy)
    config = read_projector_config(folder / PROJECTOR_CONFIG)
    (embedding,) = config.embeddings
    assert not Path(embedding.tensor_path).is_absolute() and embedding.tensor_path.startswith(PROJECTOR + "/")
    features = (folder / embedding.tensor_path).read_text().splitlines()
    assert len(features) == 32 and {len(row.split("\t")) for row in features} == {84}  # the 84 units before logits
    labels = (folder / embedding.metadata_path).read_text().splitlines()
    assert labels[0] == "class\ttest image" and len(labels) == 33  # with 2 columns the projector takes a header
    assert labels[1:4] == ["T-shirt/top\t0", "Trouser\t1", "Pullover\t2"]
    sprite = Image.open(folder / embedding.sprite.image_path)
    assert sprite.size == (6 * 28, 6 * 28) and list(embedding.sprite.single_image_dim) == [28, 28]
    assert check_projector_configs(copy) == 1


def test_a_received_projector_config_cannot_name_files_outside_its_folder(sigmoid_run, tmp_path, capsys):
    folder = tmp_path / "received"
    shutil.copytree(event_dir(sigmoid_run), folder)
    config = folder / PROJECTOR_CONFIG
    good = config.read_text()
    (tmp_path / "secret.tsv").write_text("secret\n")
    (folder / PROJECTOR / "link.tsv").symlink_to(tmp_path / "secret.tsv")
    for bad in ("/etc/passwd", "../secret.tsv", "projector/../../secret.tsv", "~/x.tsv", "projector/link.tsv"):
        config.write_text(good.replace("projector/labels.tsv", bad))
        with pytest.raises(UserError, match="outside its folder"):
            read_projector_config(config)
        with pytest.raises(SystemExit):
            main([str(tmp_path)])
        assert "error:" in capsys.readouterr().err
    config.write_text("embeddings { not a field }")
    with pytest.raises(UserError, match="not a TensorBoard projector config"):
        read_projector_config(config)
    # a folder that is not there, or a file, is no folder that passed the check
    for typo in (tmp_path / "recieved", config):
        with pytest.raises(SystemExit):
            main([str(typo)])
        assert (
            capsys.readouterr().err.strip() == f"error: {typo} is not a folder; give the run, sweep or outputs "
            "folder TensorBoard is to show."
        )


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_relu_and_batch_norm_count_dead_units_and_name_layers_in_depth_order(tmp_path, fake_data):
    run = tmp_path / "run"
    train(compose_config(run, [*TINY, "trainer.max_epochs=1", "model=lenet_modern", f"data.data_dir={fake_data}"]))
    ev = events(run)
    assert sorted(t for t in ev.Tags()["scalars"] if t.startswith("dead/")) == [f"dead/{n}" for n in ACTIVATED]
    assert not [t for t in ev.Tags()["scalars"] if t.startswith("saturated/")]
    assert "weights/bn1.weight" in ev.Tags()["histograms"] and "weights/conv1.bias" not in ev.Tags()["histograms"]
    assert ev.Tags()["graph"]


def test_the_probe_changes_no_weights_gradients_or_batch_norm_statistics():
    net = LeNet(activation="relu", batch_norm=True)
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    grads, outputs = _probe(net, layer_names(net), x, y)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters()) and not net.training
    assert set(grads) == set(net.parameters())
    assert sorted(outputs) == ACTIVATED and outputs["conv1"][1].shape == (8, 6, 24, 24)


def test_every_activation_module_gets_its_histogram_and_tanh_its_saturation():
    """A net of one's own with tanh, GELU, PReLU and a softmax: only sigmoids and ReLUs were looked at, so such a
    net had no activations/ histograms and no saturation chart at all."""
    net = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(784, 32),
        torch.nn.Tanh(),
        torch.nn.Linear(32, 16),
        torch.nn.GELU(),
        torch.nn.Linear(16, 10),
        torch.nn.PReLU(),
        torch.nn.Softmax(dim=1),  # a distribution, not an activation to chart
    )
    names = layer_names(net)
    assert [names[net[i]] for i in (2, 4, 6)] == ["linear1", "linear2", "6"]  # PReLU: its weight keeps its name
    x, y = torch.rand(16, 1, 28, 28) * 40, torch.arange(16) % 10  # large inputs: a saturated tanh
    _, outputs = _probe(net, names, x, y)
    assert sorted(outputs) == ["6", "linear1", "linear2"]
    scalars, histograms = measure(net, names, x, y)
    assert {f"activations/{n}" for n in ("linear1", "linear2", "6")} <= set(histograms)
    assert set(scalars) - {t for t in scalars if t.startswith("grad_mean_abs/")} == {"saturated/linear1"}
    tanh = outputs["linear1"][1]
    assert scalars["saturated/linear1"] == pytest.approx(((tanh < -0.9) | (tanh > 0.9)).float().mean().item())
    assert scalars["saturated/linear1"] > 0.5


@pytest.mark.slow  # a few seconds: make test runs it, make test-fast does not
def test_the_recorded_gradients_are_the_same_with_several_steps_per_call(sigmoid_run, tmp_path):
    run = tmp_path / "run"
    data = tmp_path / "data"
    write_fake_fashion_mnist(data)
    train(compose_config(run, [*TWO_EPOCHS, f"data.data_dir={data}", "steps_per_call=2"]))
    one, two = events(sigmoid_run), events(run)
    for layer in LAYERS:
        assert [e.value for e in two.Scalars(f"grad_mean_abs/{layer}")] == pytest.approx(
            [e.value for e in one.Scalars(f"grad_mean_abs/{layer}")], rel=1e-4
        )


@pytest.mark.slow
def test_without_tensorboard_it_writes_nothing_and_sweeps_default_to_the_light_form(tmp_path, fake_data):
    run = tmp_path / "run"
    train(compose_config(run, [*TINY, "trainer.max_epochs=1", "logger=csv", f"data.data_dir={fake_data}"]))
    assert not list(run.rglob(PROJECTOR_CONFIG)) and not (run / "tensorboard").exists()
    single = compose_config(tmp_path / "single").callbacks.network_view
    assert single.histograms is True and single.projector_images == 1000
    swept = OmegaConf.to_container(compose_config(tmp_path / "job", ["hydra.mode=MULTIRUN"]), resolve=True)
    assert swept["callbacks"]["network_view"]["histograms"] is False
    assert swept["callbacks"]["network_view"]["projector_images"] == 0
    on = compose_config(tmp_path / "job", ["hydra.mode=MULTIRUN", "callbacks.network_view.histograms=true"])
    assert on.callbacks.network_view.histograms is True


@apply(real_data)
def test_on_the_real_data_the_sigmoid_nets_gradients_shrink_towards_the_input(tmp_path):
    """One epoch of debug=limit (10 batches): the book's net against lenet_modern, as docs/tensorboard.md says."""
    first = {}
    for model in ("lenet", "lenet_modern"):
        quick = ["trainer=cpu", "debug=limit", "trainer.max_epochs=1", "callbacks.network_view.projector_images=0"]
        train(compose_config(tmp_path / model, [*quick, f"model={model}"]))
        ev = events(tmp_path / model)
        first[model] = {layer: ev.Scalars(f"grad_mean_abs/{layer}")[0].value for layer in LAYERS}
    # The sigmoid net's gradients shrink by orders of magnitude from the output layer to the first convolution
    # (measured: about 500x); ReLU with batch norm keeps them within a few times of each other (about 1x).
    assert first["lenet"]["conv1"] < first["lenet"]["linear3"] / 100
    assert first["lenet_modern"]["conv1"] > first["lenet_modern"]["linear3"] / 10
