"""The CIFAR comparison of notebook 04 on generated fixtures (a pipeline check): runs pair by seed, k fits the
class count, the confusion matrix counts every test image."""

import numpy as np
import pytest

from hncam_utils.cifar_experiment import CIFAR_K, CIFAR_SETTINGS, confusion_matrix, load_cifar_pair, run_cifar
from hncam_utils.experiments import paired_difference


def test_smoke_comparison_on_the_cifar10_fixture():
    setting = CIFAR_SETTINGS["smoke"]
    train, test, classes = load_cifar_pair("cifar10", setting)
    assert len(classes) == 10 and len(train) == 50 and len(test) == 50
    results = run_cifar("cifar10", setting, train, test, len(classes), progress=False)
    assert [r.label for r in results] == ["ce", "hnc_mse"] and all(r.config.k == CIFAR_K["cifar10"] for r in results)
    assert results[1].config.loss == "hnc_mse" and results[1].config.hnc_lambda == 0.07
    verdict = paired_difference(results, "top1", "ce")["hnc_mse"]
    assert verdict.n == 1 and verdict.verdict == "too few seeds to tell"
    cm = confusion_matrix(results[0].model, test, 10)
    assert cm.shape == (10, 10) and cm.sum() == 50
    assert np.array_equal(cm.sum(axis=1), np.bincount(test.targets, minlength=10))


def test_k_is_below_the_class_count():
    assert all(k < c for k, c in ((CIFAR_K["cifar10"], 10), (CIFAR_K["cifar100"], 100)))
    from hncam_utils.models import check_k

    with pytest.raises(ValueError, match="use k <= 9"):
        check_k(100, 10, "CIFAR-10")
