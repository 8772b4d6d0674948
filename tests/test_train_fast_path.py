"""The training path that keeps a GPU busy, checked on the CPU: no read-back per step (counted with the
accelerator behaviour switched on), a non-finite loss caught by the epoch's end, parameter groups, recipes,
test-time flip, torch.compile and the settings that do not invalidate a checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from hncam_utils import losses as losses_mod
from hncam_utils import train as train_mod
from hncam_utils.data import DeviceLoader
from hncam_utils.models import digits_cnn
from hncam_utils.runtime import seed_everything
from hncam_utils.train import RECIPES, TrainConfig, fit, load_checkpoint, recipe

CFG = TrainConfig(epochs=1, batch_size=16, loss="hnc_mse", hnc_lambda=0.1, k=3, optimizer="sgd", lr=0.05, seed=1)


def _data(n):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10


def _model(seed=0):
    seed_everything(seed)
    return digits_cnn(width=4)


READBACKS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "cpu", "numpy")


def _count_readbacks(monkeypatch, run):
    """Call ``run()`` while counting every Tensor method that copies a value to the host."""
    calls = []
    for name in READBACKS:
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    try:
        run()
    finally:
        monkeypatch.undo()
    return calls


@pytest.mark.parametrize("loss", ["ce", "hnc_mse", "hnc_kd"])
def test_no_readback_per_step_on_an_accelerator(monkeypatch, loss):
    """With the CPU treated like a GPU (where a read-back stalls the queue), the number of read-backs of a
    training epoch does not grow with the number of steps: they happen once per epoch."""
    counts = []
    for n in (32, 128):  # 2 and 8 steps
        x, y = _data(n)
        loader = DeviceLoader(x, y, crop=2, flip=True, mean=0.3, std=0.35)
        cfg = CFG.replace(loss=loss, hnc_lambda=0.0 if loss == "ce" else 0.1)
        model = _model()

        def run():
            monkeypatch.setattr(train_mod, "_READBACK_FREE", ())
            monkeypatch.setattr(losses_mod, "_READBACK_FREE", ())
            fit(model, loader, cfg, device="cpu", progress=False)

        counts.append(_count_readbacks(monkeypatch, run))
    assert len(counts[0]) == len(counts[1]), (counts[0], counts[1])
    # once per fit call, before training: the label check and the data fingerprint (copy to the host, min/max,
    # hash: at most 4); once per epoch: the running sums and the finite flag (at most 2 more)
    assert len(counts[1]) <= 6, counts[1]


def test_a_nan_loss_is_caught_by_the_end_of_the_epoch_off_the_cpu(monkeypatch, tmp_path):
    x, y = _data(64)
    loader = DeviceLoader(x, y, mean=0.3, std=0.35)
    monkeypatch.setattr(train_mod, "_READBACK_FREE", ())
    ckpt = tmp_path / "nan.pt"
    model = _model()
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN or infinite in at least one step of epoch 1"):
        fit(model, loader, CFG, checkpoint=ckpt, progress=False)
    assert not ckpt.exists()  # nothing broken was saved
    monkeypatch.setattr(train_mod, "_READBACK_FREE", ("cpu",))
    with pytest.raises(FloatingPointError, match="step 1"):  # on the CPU: at once
        fit(model, loader, CFG, progress=False)


def test_head_lr_mult_makes_two_parameter_groups():
    x, y = _data(32)
    model = _model()
    cfg = CFG.replace(head_lr_mult=10.0, schedule="constant")
    opt = train_mod._make_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.5]
    head = {id(p) for p in model.classifier.parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == head
    assert len(opt.param_groups[0]["params"]) + len(head) == len(list(model.parameters()))
    sched = train_mod._make_scheduler(opt, cfg.replace(schedule="onecycle"), 10)
    assert opt.param_groups[1]["max_lr"] == pytest.approx(0.5) and opt.param_groups[0]["max_lr"] == pytest.approx(0.05)
    hist = fit(model, DeviceLoader(x, y), cfg.replace(schedule="cosine"), progress=False)
    assert math.isfinite(hist["train_loss"][0])
    assert len(train_mod._make_optimizer(model, CFG).param_groups) == 1 and sched is not None


def test_recipes_match_the_references():
    r = RECIPES["cifar_resnet18"]
    assert (r.optimizer, r.lr, r.momentum, r.weight_decay, r.batch_size, r.schedule, r.epochs) == (
        "sgd", 0.1, 0.9, 5e-4, 128, "cosine", 200)
    f = recipe("resnet50_finetune", loss="hnc_kd", hnc_lambda=0.01)
    assert (f.optimizer, f.lr, f.head_lr_mult, f.nesterov, f.weight_decay, f.loss) == (
        "sgd", 0.01, 10.0, True, 1e-4, "hnc_kd")
    w = RECIPES["resnet50_wsol"]
    assert (w.schedule, w.step_size, w.gamma, w.epochs, w.batch_size, w.head_lr_mult) == ("step", 30, 0.1, 40, 64, 10.0)
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("imagenet")


def test_tta_flip_averages_the_mirrored_logits():
    x, y = _data(48)
    test = DeviceLoader(x[:20], y[:20], shuffle=False, mean=0.3, std=0.35)
    model = _model()
    logits, targets = train_mod._predict(model, test.epoch_batches(0, 0, 8), torch.device("cpu"), None, True, None)
    model.eval()
    xs = next(iter(test.replace(batch_size=20)))[0]
    with torch.no_grad():
        ref = (model(xs).logits + model(xs.flip(3)).logits) / 2
    assert torch.allclose(logits, ref, atol=1e-5) and torch.equal(targets, y[:20])
    hist = fit(_model(), DeviceLoader(x, y), CFG.replace(tta_flip=True), test_data=test, progress=False)
    assert "test_acc" in hist


def test_compile_is_used_for_the_training_forward(monkeypatch):
    seen = []

    def fake_compile(model, *args, **kwargs):
        seen.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    x, y = _data(32)
    model = _model()
    fit(model, DeviceLoader(x, y), CFG.replace(compile=True), progress=False)
    assert seen == [model]


def test_execution_settings_do_not_invalidate_a_checkpoint(tmp_path):
    x, y = _data(32)
    ckpt = tmp_path / "c.pt"
    fit(_model(), DeviceLoader(x, y), CFG.replace(epochs=1, channels_last=False), checkpoint=ckpt, progress=False)
    hist = fit(_model(), DeviceLoader(x, y), CFG.replace(epochs=1, compile=False, channels_last=True),
               checkpoint=ckpt, progress=False)
    assert load_checkpoint(ckpt)["epoch"] == 1 and len(hist["epoch"]) == 1


def test_labels_outside_the_model_are_caught_on_the_host():
    from torch.utils.data import TensorDataset

    x, y = _data(32)
    data = TensorDataset(((x.float() / 255)[:, None]), y + 5)
    with pytest.raises(ValueError, match=r"labels in \[5, 14\] but the model has 10 classes"):
        fit(_model(), data, CFG, progress=False)
