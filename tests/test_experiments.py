"""run_experiment keeps the test logits of its one evaluation pass (notebooks reuse them instead of a second pass)."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from hncam_utils.data import ClutteredDigits
from hncam_utils.experiments import LossSpec, run_experiment
from hncam_utils.metrics import predict
from hncam_utils.train import TrainConfig


def test_run_experiment_keeps_the_evaluation_logits(tmp_path):
    overrides = {"n_train": 64, "n_test": 40}
    specs = [LossSpec("ce"), LossSpec("hnc_kd", hnc_lambda=0.1, k=3)]
    results = run_experiment("hard", specs, [0], TrainConfig(epochs=1, batch_size=32), data_overrides=overrides,
                             cache_dir=tmp_path, progress=False)
    test_set = ClutteredDigits("test", "hard", **overrides)
    for r in results:
        assert r.logits.shape == (40, 10) and r.predictions.shape == (40,)
        assert torch.equal(r.predictions, r.logits.argmax(dim=1))
        # the same pass as the metrics: accuracy and test loss agree with them exactly
        assert 100.0 * (r.predictions == test_set.targets).float().mean().item() == pytest.approx(r.metrics["top1"])
        assert F.cross_entropy(r.logits, test_set.targets).item() == pytest.approx(r.metrics["loss"], rel=1e-6)
        # and they are the model's logits on the test set (a second pass gives the same numbers)
        again, _ = predict(r.model, DataLoader(test_set, batch_size=16))
        assert torch.allclose(again, r.logits, atol=1e-5)
    # a cached run is evaluated again on loading, so it carries its logits too
    cached = run_experiment("hard", specs[:1], [0], TrainConfig(epochs=1, batch_size=32), data_overrides=overrides,
                            cache_dir=tmp_path, progress=False)[0]
    assert torch.allclose(cached.logits, results[0].logits, atol=1e-6)
