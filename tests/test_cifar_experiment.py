"""The CIFAR comparison of notebook 04 on generated fixtures (a pipeline check): data on the device, runs pair
by seed, k fits the class count, the confusion matrix counts every test image, and the GPU time estimate is
the counted FLOPs over the published peak."""

import numpy as np
import pytest
import torch

from hncam_utils.cifar_experiment import (CIFAR_K, CIFAR_SETTINGS, PEAK_TFLOPS, cifar_loaders, confusion_matrix,
                                          gpu_time_estimate, load_cifar_pair, run_cifar, training_flops)
from hncam_utils.experiments import paired_difference
from hncam_utils.train import RECIPES


def test_smoke_comparison_on_the_cifar10_fixture():
    setting = CIFAR_SETTINGS["smoke"]
    train, test, classes = cifar_loaders("cifar10", setting, device="cpu")
    assert len(classes) == 10 and train.num_samples == 10 and test.num_samples == 10
    assert train.crop == 4 and train.flip and not test.flip and train.images.dtype == torch.uint8
    results = run_cifar("cifar10", setting, train, test, len(classes), progress=False)
    assert [r.label for r in results] == ["ce", "hnc_mse", "hnc_kd"]
    assert all(r.config.k == CIFAR_K["cifar10"] for r in results)
    assert results[1].config.hnc_lambda == 0.07 and results[2].config.loss == "hnc_kd"
    verdict = paired_difference(results, "top1", "ce")["hnc_mse"]
    assert verdict.n == 1 and verdict.verdict == "too few seeds to tell"
    cm = confusion_matrix(results[0].predictions, test, 10)
    assert cm.shape == (10, 10) and cm.sum() == 10
    assert np.array_equal(cm.sum(axis=1), np.bincount(test.targets.numpy(), minlength=10))
    assert np.trace(cm) / 10 * 100 == pytest.approx(results[0].metrics["top1"])
    assert np.array_equal(cm, confusion_matrix(results[0].model, test, 10))  # the same from the model
    # the classic pipeline (per-image torchvision transforms) still loads the same fixture
    ds_train, ds_test, _ = load_cifar_pair("cifar10", setting)
    assert len(ds_train) == 10 and np.array_equal([int(ds_test[i][1]) for i in range(10)], test.targets.numpy())


def test_settings_follow_the_reference_recipe_and_k_is_below_the_class_count():
    ref = RECIPES["cifar_resnet18"]
    for s in CIFAR_SETTINGS.values():
        t = s.train
        assert (t.optimizer, t.momentum, t.weight_decay, t.schedule) == (ref.optimizer, ref.momentum,
                                                                          ref.weight_decay, ref.schedule)
    gpu = CIFAR_SETTINGS["gpu"]
    assert gpu.n_train is None and len(gpu.seeds) >= 3 and len(gpu.losses) == 3
    assert all(k < c for k, c in ((CIFAR_K["cifar10"], 10), (CIFAR_K["cifar100"], 100)))
    from hncam_utils.models import check_k

    with pytest.raises(ValueError, match="use k <= 9"):
        check_k(100, 10, "CIFAR-10")


def test_gpu_time_estimate_is_counted_flops_over_the_published_peak():
    train_f, eval_f = training_flops(num_classes=10)
    assert 1.0e9 < eval_f < train_f < 4 * eval_f  # ResNet-18 at 32 px: about 1.1 GFLOP forward, 3x to train
    gpu = CIFAR_SETTINGS["gpu"]
    rows = gpu_time_estimate(gpu, datasets=("cifar10",), utilization=(0.25, 0.5))
    assert [r["gpu"] for r in rows] == list(PEAK_TFLOPS)
    per_run = gpu.train.epochs * (50000 * train_f + 10000 * eval_f) + 10000 * eval_f
    t4 = rows[0]
    assert t4["runs"] == 9 and t4["pflop"] == pytest.approx(9 * per_run / 1e15)
    assert t4["at_peak"] == pytest.approx(9 * per_run / (PEAK_TFLOPS[t4["gpu"]] * 1e12) / 60)
    assert t4["optimistic"] == pytest.approx(2 * t4["at_peak"]) and t4["pessimistic"] == pytest.approx(4 * t4["at_peak"])
    with pytest.raises(ValueError, match="utilization"):
        gpu_time_estimate(gpu, utilization=(0.5, 0.2))


def test_mixed_precision_uses_bf16_only_where_the_gpu_has_it(monkeypatch):
    from hncam_utils import train

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    for capability, dtype in (((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None, c=capability: c)
        assert train._amp_dtype(torch.device("cuda"), True) is dtype  # T4 (7.5): fp16 + scaler, not emulated bf16
    assert train._amp_dtype(torch.device("cuda"), False) is None and train._amp_dtype(torch.device("cpu"), True) is None
