"""Fine-tuning settings for CUB / CIFAR: a 10x learning rate on the new head, and checks that a model, its data
set and HNC's k fit together, with messages that say what to use."""

from __future__ import annotations

import pytest
import torch

from hncam_utils.data import CUB200, cub_transforms, load_cifar, make_cifar_fixture, make_cub_fixture
from hncam_utils.models import check_num_classes, cifar_resnet18, digits_cnn
from hncam_utils.train import TrainConfig, _make_optimizer, _make_scheduler, fit


def test_head_learns_ten_times_faster():
    model = digits_cnn(num_classes=4, in_channels=3)
    opt = _make_optimizer(model, TrainConfig(optimizer="sgd", lr=0.01, head_lr_mult=10, schedule="cosine"))
    body, head = opt.param_groups
    assert head["lr"] == pytest.approx(0.1) and body["lr"] == pytest.approx(0.01)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.classifier.parameters()}
    assert len(body["params"]) + len(head["params"]) == len(list(model.parameters()))
    cfg = TrainConfig(lr=0.01, head_lr_mult=10, schedule="onecycle", epochs=2)
    opt = _make_optimizer(model, cfg)
    sched = _make_scheduler(opt, cfg, steps_per_epoch=5)
    for _ in range(4):
        opt.step()
        sched.step()
    body, head = opt.param_groups
    assert head["lr"] == pytest.approx(10 * body["lr"])  # the ratio holds along the schedule
    assert len(_make_optimizer(model, TrainConfig()).param_groups) == 1


def test_fine_tuning_runs_on_the_cub_fixture(tmp_path):
    make_cub_fixture(tmp_path, num_classes=3, per_class=4)
    train = CUB200(tmp_path, "train", transform=cub_transforms(train=True, size=32))
    test = CUB200(tmp_path, "test", transform=cub_transforms(train=False, size=32), return_box=True)
    torch.manual_seed(0)
    model = digits_cnn(num_classes=3, in_channels=3)
    check_num_classes(model, train.num_classes, "CUB-200-2011 (fixture)", k=2)
    cfg = TrainConfig(epochs=1, batch_size=3, optimizer="sgd", lr=0.01, head_lr_mult=10, schedule="cosine",
                      loss="hnc_mse", hnc_lambda=0.07, k=2)
    history = fit(model, train, cfg, test_data=test, progress=False)
    assert len(history["train_loss"]) == 1 and 0 <= history["test_acc"][0] <= 100


def test_model_and_k_must_fit_the_data_set(tmp_path):
    make_cifar_fixture(tmp_path, "cifar10", per_batch=2)
    data = load_cifar("cifar10", tmp_path, verify=False)
    model = cifar_resnet18(num_classes=100)
    with pytest.raises(ValueError, match="has 100 outputs but CIFAR-10 has 10 classes.*num_classes=10"):
        check_num_classes(model, len(data.classes), "CIFAR-10")
    with pytest.raises(ValueError, match=r"k = 100 negatives per image is too large for CIFAR-10.*use k <= 9"):
        check_num_classes(cifar_resnet18(num_classes=10), len(data.classes), "CIFAR-10", k=100)
    check_num_classes(cifar_resnet18(num_classes=10), 10, "CIFAR-10", k=9)
