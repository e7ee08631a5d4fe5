"""ResNet-20 written in view: the shared CIFAR-10 checkpoint loads strictly and behaves like a trained classifier."""

from __future__ import annotations

import itertools
import shutil

import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from llm_transfer import resnet
from llm_transfer.models import ModelError, count_parameters


@pytest.fixture(scope="module")
def checkpoint():
    """The shared checkpoint file (../shared/models/resnet20-cifar10/resnet20-12fca82f.th)."""
    path = resnet.find_resnet20()
    if path is None:
        pytest.skip("no shared ResNet-20 checkpoint (../shared/models/resnet20-cifar10/resnet20-12fca82f.th)")
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    return resnet.load_resnet20(checkpoint)


@pytest.fixture(scope="module")
def digits():
    return resnet.digits_for_resnet()


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    x = torch.randn(2, 16, 8, 8)
    y = resnet.option_a_shortcut(x, 32)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])  # the old channels in the middle, as in the original
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_architecture_has_he_et_al_size_and_shapes():
    net = resnet.ResNet20().eval()
    assert count_parameters(net) == 269_722  # "0.27M" in He et al. 2016, Table 6
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == 20  # 19 conv layers and the linear layer
    with torch.no_grad():
        x = torch.randn(5, 3, 32, 32)
        assert net(x).shape == (5, 10) and net.features(x).shape == (5, 64)
    with pytest.raises(ValueError, match="batch, 3, height, width"):
        net(torch.randn(5, 1, 32, 32))


def test_checkpoint_loads_strictly_with_every_key(checkpoint, model):
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    assert len(state) == 97 and all(k.startswith("module.") for k in state)
    ours = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
    assert ours == {k.removeprefix("module.") for k in state}
    assert torch.equal(model.linear.weight, state["module.linear.weight"])
    assert not model.training


def test_batchnorm_running_statistics_are_the_trained_ones(model):
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 19
    for bn in bns:  # a fresh BatchNorm has mean 0 and variance 1 everywhere
        assert bn.running_mean.abs().max() > 0.01 and (bn.running_var - 1).abs().max() > 0.1


def bn1_mean_predicted(model: resnet.ResNet20, mean: tuple, std: tuple) -> torch.Tensor:
    """bn1's running mean as the training pipeline predicts it: conv1 applied to CIFAR-10's mean image, averaged
    over the trainer's 4-pixel black-padded random crops, normalised with (mean, std). Exact for a constant mean
    image, since convolution and averaging are linear."""
    img = F.pad(torch.tensor(resnet.CIFAR10_MEAN).view(1, 3, 1, 1).expand(1, 3, 32, 32), (4, 4, 4, 4))
    crops = torch.cat([img[:, :, i:i + 32, j:j + 32] for i, j in itertools.product(range(9), range(9))])
    x = (crops - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return model.conv1(x).mean(dim=(0, 2, 3))


def test_first_layer_statistics_fit_conv1_and_the_trainers_normalisation(model):
    stored = model.bn1.running_mean
    fit = bn1_mean_predicted(model, resnet.TRAIN_MEAN, resnet.TRAIN_STD)
    corr = torch.corrcoef(torch.stack([fit, stored]))[0, 1]
    assert corr > 0.98 and (fit - stored).abs().max() < 0.15  # measured 0.995 and 0.083
    cifar_std = (0.2470, 0.2435, 0.2616)  # CIFAR-10's own normalisation fits worse: this net expects TRAIN_MEAN/STD
    wrong = bn1_mean_predicted(model, resnet.CIFAR10_MEAN, cifar_std)
    assert torch.corrcoef(torch.stack([wrong, stored]))[0, 1] < 0.9  # measured 0.76


def test_predictions_vary_and_frozen_features_separate_digits(model, digits):
    x, y = digits[0][:200], digits[1][:200].numpy()
    torch.manual_seed(0)
    untrained = resnet.ResNet20().eval()
    with torch.no_grad():
        assert len(model(x).argmax(1).unique()) >= 2  # not one class for every input
        trained_f, untrained_f = model.features(x).numpy(), untrained.features(x).numpy()
    probe = LogisticRegression(max_iter=2000)
    trained_acc = cross_val_score(probe, trained_f, y, cv=5).mean()
    untrained_acc = cross_val_score(probe, untrained_f, y, cv=5).mean()
    assert trained_acc > 0.7 and trained_acc > untrained_acc + 0.3, (trained_acc, untrained_acc)  # ~0.81 vs ~0.35


def test_digits_are_prepared_for_the_network(digits):
    x, y = digits
    assert x.shape == (1797, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (1797,)
    assert torch.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    mean, std = torch.tensor(resnet.TRAIN_MEAN).view(1, 3, 1, 1), torch.tensor(resnet.TRAIN_STD).view(1, 3, 1, 1)
    pixels = x * std + mean  # back to [0, 1]: black background, white ink, the same grey in all three channels
    assert pixels.min() > -1e-6 and pixels.max() < 1 + 1e-6
    assert pixels.amin(dim=(0, 2, 3)).abs().max() < 1e-6 and (pixels.amax(dim=(0, 2, 3)) - 1).abs().max() < 1e-6
    assert torch.allclose(pixels[:, 0], pixels[:, 2], atol=1e-6)


def test_missing_file_is_one_line(tmp_path):
    with pytest.raises(ModelError, match="checkpoint not found") as e:
        resnet.load_resnet20(tmp_path / "resnet20.th")
    assert "\n" not in str(e.value)


def test_altered_file_is_refused(checkpoint, tmp_path):
    copy = tmp_path / checkpoint.name
    shutil.copy(checkpoint, copy)
    shutil.copy(checkpoint.parent / "SHA256SUMS", tmp_path / "SHA256SUMS")
    resnet.load_resnet20(copy)  # an exact copy with its SHA256SUMS loads
    data = bytearray(copy.read_bytes())
    data[-100] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256 is .* expected 12fca82f") as e:
        resnet.load_resnet20(copy)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "model.th"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="not a pytorch_resnet_cifar10 checkpoint") as e:
        resnet.load_resnet20(bad)
    assert "\n" not in str(e.value)
