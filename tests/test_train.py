"""The training engine: history, HNC term, checkpoints, resume after an interruption, cache."""

import os

import pytest
import torch
from torch.utils.data import Dataset

from hncam_utils.data import ClutteredDigits
from hncam_utils.models import digits_cnn
from hncam_utils.runtime import seed_everything
from hncam_utils.train import (
    CheckpointMismatchError,
    TrainConfig,
    fit,
    load_checkpoint,
    run_name,
    save_checkpoint,
    train_or_load,
)


@pytest.fixture(scope="module")
def tiny():
    return ClutteredDigits("train", "easy", n_train=96, n_test=32), ClutteredDigits("test", "easy", n_train=96, n_test=32)


def small_model(seed=0):
    seed_everything(seed)
    return digits_cnn(width=4)


CFG = TrainConfig(epochs=3, batch_size=32, loss="hnc_kd", hnc_lambda=0.1, k=3, seed=5)


def test_history_records_every_epoch_and_the_hnc_term(tiny):
    train, test = tiny
    hist = fit(small_model(), train, CFG, test_data=test, progress=False)
    for key in ("epoch", "lr", "train_loss", "train_ce", "train_hnc", "train_acc", "test_acc", "test_loss", "seconds"):
        assert len(hist[key]) == 3, key
    assert all(h > 0 for h in hist["train_hnc"])
    for tot, ce, hnc in zip(hist["train_loss"], hist["train_ce"], hist["train_hnc"]):
        assert tot == pytest.approx(ce + 0.1 * hnc, rel=1e-5)
    ce_hist = fit(small_model(), train, CFG.replace(loss="ce", hnc_lambda=0.0), progress=False)
    assert ce_hist["train_hnc"] == [0.0, 0.0, 0.0]


def test_training_learns_something():
    train = ClutteredDigits("train", "easy", n_train=800, n_test=300)
    test = ClutteredDigits("test", "easy", n_train=800, n_test=300)
    seed_everything(0)
    hist = fit(digits_cnn(), train, TrainConfig(epochs=3, batch_size=32, lr=5e-3), test_data=test, progress=False)
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["test_acc"][-1] > 25.0  # chance is 10%; measured 43% with this seed


def test_same_seed_same_run(tiny):
    train, _ = tiny
    a, b = small_model(), small_model()
    fit(a, train, CFG, progress=False)
    fit(b, train, CFG, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


class Interrupt(Exception):
    pass


def _assert_same_state(a, b):
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), f"{k} differs"


def test_resume_after_interrupt_ends_where_uninterrupted_run_ends(tiny, tmp_path):
    train, test = tiny
    ref = small_model()
    ref_hist = fit(ref, train, CFG, test_data=test, checkpoint=tmp_path / "ref.pt", progress=False)

    def stop_after_two(epoch, _history):
        if epoch == 2:
            raise Interrupt

    ckpt = tmp_path / "run.pt"
    with pytest.raises(Interrupt):
        fit(small_model(), train, CFG, test_data=test, checkpoint=ckpt, progress=False, callbacks=[stop_after_two])
    assert load_checkpoint(ckpt)["epoch"] == 2
    resumed = small_model(seed=123)  # a different init: everything must come from the checkpoint
    hist = fit(resumed, train, CFG, test_data=test, checkpoint=ckpt, progress=False)
    _assert_same_state(ref, resumed)
    assert hist["epoch"] == [1.0, 2.0, 3.0]
    for key in ("train_loss", "train_hnc", "test_acc", "lr"):
        assert hist[key] == ref_hist[key], key


class FailingOnce(Dataset):
    """Raises once, in the middle of an epoch, like a crash or a Ctrl-C during training."""

    def __init__(self, base, fail_at):
        self.base, self.fail_at, self.calls, self.failed = base, fail_at, 0, False

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.calls += 1
        if not self.failed and self.calls == self.fail_at:
            self.failed = True
            raise KeyboardInterrupt
        return self.base[i]


def test_resume_after_a_mid_epoch_crash(tiny, tmp_path):
    train, _ = tiny
    ref = small_model()
    fit(ref, train, CFG, progress=False)
    flaky = FailingOnce(train, fail_at=len(train) + 40)  # during epoch 2
    ckpt = tmp_path / "crash.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(small_model(), flaky, CFG, checkpoint=ckpt, progress=False)
    assert load_checkpoint(ckpt)["epoch"] == 1
    resumed = small_model(seed=7)
    fit(resumed, flaky, CFG, checkpoint=ckpt, progress=False)
    _assert_same_state(ref, resumed)


def test_finished_checkpoint_is_loaded_not_retrained(tiny, tmp_path):
    train, _ = tiny
    ckpt = tmp_path / "done.pt"
    trained = small_model()
    fit(trained, train, CFG, checkpoint=ckpt, progress=False)
    mtime = os.path.getmtime(ckpt)
    calls = []
    loaded = small_model(seed=99)
    hist = fit(loaded, train, CFG, checkpoint=ckpt, progress=False, callbacks=[lambda e, h: calls.append(e)])
    assert calls == [] and os.path.getmtime(ckpt) == mtime and len(hist["epoch"]) == 3
    _assert_same_state(trained, loaded)


def test_checkpoint_with_other_settings_is_refused(tiny, tmp_path):
    train, _ = tiny
    ckpt = tmp_path / "a.pt"
    fit(small_model(), train, CFG.replace(epochs=1), checkpoint=ckpt, progress=False)
    with pytest.raises(CheckpointMismatchError, match="hnc_lambda"):
        fit(small_model(), train, CFG.replace(epochs=1, hnc_lambda=0.5), checkpoint=ckpt, progress=False)


def test_checkpoint_is_plain_data_loadable_with_weights_only(tiny, tmp_path):
    train, _ = tiny
    ckpt = tmp_path / "w.pt"
    fit(small_model(), train, CFG.replace(epochs=1, schedule="onecycle"), checkpoint=ckpt, progress=False)
    state = torch.load(ckpt, weights_only=True)
    assert set(state) >= {"model", "optimizer", "scheduler", "epoch", "history", "config"}
    assert state["config"]["loss"] == "hnc_kd"


def test_save_checkpoint_is_atomic(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"x": torch.ones(2)}, path)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_checkpoint({"x": Boom()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(2))  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left behind


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="delete it"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_train_or_load_uses_the_cache(tiny, tmp_path):
    train, test = tiny
    cfg = CFG.replace(epochs=1)
    name = run_name("digits-tiny", "digits_cnn", cfg)
    assert name == "digits-tiny_digits_cnn_hnc_kd_k3_lam0.1_e1_s5"
    m1, h1 = train_or_load(lambda: digits_cnn(width=4), train, cfg, name, test_data=test, cache_dir=tmp_path, progress=False)
    assert (tmp_path / "runs" / f"{name}.pt").exists()
    m2, h2 = train_or_load(lambda: digits_cnn(width=4), train, cfg, name, test_data=test, cache_dir=tmp_path, progress=False)
    assert h1 == h2 and not m2.training
    _assert_same_state(m1, m2)


def test_multilabel_training_uses_bce_and_map():
    train = ClutteredDigits("train", "multilabel", n_train=64, n_test=32)
    test = ClutteredDigits("test", "multilabel", n_train=64, n_test=32)
    hist = fit(small_model(), train, TrainConfig(epochs=1, batch_size=32, loss="hnc_mse", hnc_lambda=0.1, k=3),
               test_data=test, progress=False)
    assert "train_map" in hist and "test_map" in hist and hist["train_hnc"][0] > 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(loss="focal"), ValueError, "unknown loss"),
        (dict(optimizer="lion"), ValueError, "optimizer"),
        (dict(schedule="warmup"), ValueError, "schedule"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(loss="hnc_kd", hnc_lambda=0.1, k=0), ValueError, "k must be >= 1"),
        (dict(loss="hnc_kd", hnc_lambda=0.1, temperature=0), ValueError, "temperature"),
        (dict(hnc_lambda=-1), ValueError, "hnc_lambda"),
    ],
)
def test_bad_config_raises(kwargs, error, match):
    with pytest.raises(error, match=match):
        TrainConfig(**kwargs)


def test_k_too_large_for_the_data_raises_at_the_first_step(tiny):
    train, _ = tiny
    with pytest.raises(ValueError, match="k = 12 is larger"):
        fit(small_model(), train, CFG.replace(k=12, epochs=1), progress=False)


def test_fit_never_enters_autocast_off_cuda(tiny, monkeypatch):
    """torch builds inside the floor raise on ``torch.autocast("mps", enabled=False)``: off CUDA, fit and the
    HNC top-k path must not enter autocast at all (simulated here by an autocast that raises off CUDA)."""
    real = torch.autocast

    class StrictAutocast(real):
        def __init__(self, device_type, *args, **kwargs):
            if device_type != "cuda":
                raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")
            super().__init__(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", StrictAutocast)
    train, _ = tiny
    hist = fit(small_model(), train, CFG.replace(epochs=1), progress=False)
    assert len(hist["train_loss"]) == 1 and hist["train_hnc"][0] > 0


def test_checkpoint_from_before_a_new_setting_existed_still_loads(tiny, tmp_path):
    """Settings added to TrainConfig later must not invalidate cached runs written before (at the default)."""
    train, _ = tiny
    ckpt = tmp_path / "old.pt"
    fit(small_model(), train, CFG.replace(epochs=1), checkpoint=ckpt, progress=False)
    state = load_checkpoint(ckpt)
    del state["config"]["label_smoothing"]  # as if written before that field existed (default 0.0)
    save_checkpoint(state, ckpt)
    hist = fit(small_model(), train, CFG.replace(epochs=1), checkpoint=ckpt, progress=False)
    assert len(hist["epoch"]) == 1
    with pytest.raises(CheckpointMismatchError, match="label_smoothing"):
        fit(small_model(), train, CFG.replace(epochs=1, label_smoothing=0.1), checkpoint=ckpt, progress=False)


def test_a_progress_bar_does_not_change_what_is_trained(tmp_path):
    """tqdm.auto's class calls iter() on its iterable twice; a shuffling DataLoader's order depends on how often
    it is iterated, so fit must hand tqdm one iterator (progress=True and False train the same weights)."""
    from torch.utils.data import TensorDataset

    from hncam_utils.models import digits_cnn
    from hncam_utils.train import TrainConfig, fit

    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(96, 1, 48, 48, generator=gen), torch.randint(0, 10, (96,), generator=gen))
    weights = []
    for progress in (False, True):
        torch.manual_seed(1)
        model = digits_cnn(num_classes=10)
        fit(model, data, TrainConfig(epochs=2, batch_size=32, seed=3), progress=progress)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])
