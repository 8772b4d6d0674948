"""Label noise: realised rates, determinism per seed, asymmetric flips only within their pairs, save/load,
the wrapper data set, memorisation shares and clear errors."""

import json

import numpy as np
import pytest
import torch

from hncam_utils.data import CONFUSABLE, ClutteredDigits
from hncam_utils.data.noise import (
    CIFAR10_FLIPS,
    DIGITS_FLIPS,
    FASHION_FLIPS,
    NoisyLabelDataset,
    load_noisy_labels,
    make_noisy_labels,
)

N = 20_000
CLEAN = torch.arange(N) % 10  # 2,000 labels per class


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 0.8])
def test_symmetric_realised_rate_is_close_to_the_asked_rate(rate):
    noise = make_noisy_labels(CLEAN, rate, "symmetric", seed=3)
    # binomial standard deviation sqrt(r(1-r)/N) <= 0.0036: 5 SD is 0.018
    assert abs(noise.realised_rate - rate) < 0.018
    assert noise.realised_rate == pytest.approx(float((noise.labels != CLEAN).float().mean()))
    if rate == 0.0:
        assert torch.equal(noise.labels, CLEAN)
    for c, r in noise.per_class_rate().items():
        assert abs(r - rate) < 0.05, (c, r)


def test_symmetric_noise_never_keeps_the_true_class_when_it_flips_and_spreads_uniformly():
    noise = make_noisy_labels(CLEAN, 0.5, "symmetric", seed=0)
    counts = noise.transition_counts()
    off = counts[~np.eye(10, dtype=bool)].reshape(10, 9)
    # each of the 9 wrong classes gets about 2000 * 0.5 / 9 = 111 labels of every class
    assert off.min() > 60 and off.max() < 170
    assert int(counts.trace()) == int((noise.labels == CLEAN).sum())


def test_same_seed_same_labels_other_seed_other_labels():
    a = make_noisy_labels(CLEAN, 0.3, "symmetric", seed=1)
    b = make_noisy_labels(CLEAN.tolist(), 0.3, "symmetric", seed=1)
    c = make_noisy_labels(CLEAN, 0.3, "symmetric", seed=2)
    assert torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    d = make_noisy_labels(CLEAN, 0.3, "asymmetric", seed=1)
    e = make_noisy_labels(CLEAN.numpy(), 0.3, "asymmetric", seed=1)
    assert torch.equal(d.labels, e.labels)


def test_asymmetric_digits_flip_only_to_the_confusable_partner():
    noise = make_noisy_labels(CLEAN, 0.4, "asymmetric", seed=0)
    assert DIGITS_FLIPS == {c: CONFUSABLE[c][0] for c in range(10)}
    changed = noise.corrupted
    for src, dst in zip(CLEAN[changed].tolist(), noise.labels[changed].tolist()):
        assert dst == DIGITS_FLIPS[src]
    assert abs(noise.realised_rate - 0.4) < 0.02  # every digit has a partner
    assert noise.describe().startswith("asymmetric noise, rate 0.40 asked")


def test_asymmetric_cifar10_pairs_and_untouched_classes():
    noise = make_noisy_labels(CLEAN, 0.4, "asymmetric", seed=0, flips=CIFAR10_FLIPS)
    counts = noise.transition_counts()
    allowed = np.eye(10, dtype=bool)
    for src, dst in CIFAR10_FLIPS.items():
        allowed[src, dst] = True
    assert counts[~allowed].sum() == 0
    per_class = noise.per_class_rate()
    for c in range(10):
        if c in CIFAR10_FLIPS:
            assert abs(per_class[c] - 0.4) < 0.05
        else:
            assert per_class[c] == 0.0  # airplane, automobile, frog, horse, ship keep their labels
    assert abs(noise.realised_rate - 0.2) < 0.02  # half the classes flip


def test_asymmetric_fashion_pairs_flip_only_within_look_alikes():
    from hncam_utils.data import FASHION_CLASSES

    names = {FASHION_CLASSES[s]: FASHION_CLASSES[d] for s, d in FASHION_FLIPS.items()}
    assert names == {"T-shirt/top": "Shirt", "Shirt": "T-shirt/top", "Pullover": "Coat", "Coat": "Pullover",
                     "Sandal": "Sneaker", "Ankle boot": "Sneaker"}
    noise = make_noisy_labels(CLEAN, 0.4, "asymmetric", seed=0, flips=FASHION_FLIPS)
    allowed = np.eye(10, dtype=bool)
    for src, dst in FASHION_FLIPS.items():
        allowed[src, dst] = True
    assert noise.transition_counts()[~allowed].sum() == 0
    assert abs(noise.realised_rate - 0.24) < 0.02  # six of ten classes flip


def test_asymmetric_with_several_partners_draws_among_them():
    noise = make_noisy_labels(CLEAN, 0.6, "asymmetric", seed=0, flips={0: (6, 8, 9)})
    flipped = noise.labels[noise.corrupted]
    assert set(flipped.tolist()) == {6, 8, 9}
    assert set(CLEAN[noise.corrupted].tolist()) == {0}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(rate=1.0), ValueError, r"\[0, 1\)"),
        (dict(rate=-0.1), ValueError, r"\[0, 1\)"),
        (dict(rate=float("nan")), ValueError, r"\[0, 1\)"),
        (dict(rate="0.2"), TypeError, "number"),
        (dict(rate=0.2, kind="uniform"), ValueError, "unknown noise kind"),
        (dict(rate=0.2, kind="symmetric", flips=DIGITS_FLIPS), ValueError, "only applies to asymmetric"),
        (dict(rate=0.2, kind="asymmetric", flips={0: 12}), ValueError, "outside"),
        (dict(rate=0.2, kind="asymmetric", flips={3: 3}), ValueError, "to itself"),
        (dict(rate=0.2, seed=-1), ValueError, "seed"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_noisy_labels(CLEAN, **kwargs)


def test_bad_labels_raise():
    with pytest.raises(TypeError, match="integer"):
        make_noisy_labels(torch.rand(10), 0.2)
    with pytest.raises(ValueError, match="1-D"):
        make_noisy_labels(torch.zeros(4, 10, dtype=torch.long), 0.2)
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        make_noisy_labels(torch.tensor([0, 7]), 0.2, num_classes=5)
    with pytest.raises(ValueError, match="no default flip table"):
        make_noisy_labels(torch.tensor([0, 1, 2]), 0.2, "asymmetric", num_classes=3)


def test_save_and_reload_round_trip_and_checks(tmp_path):
    noise = make_noisy_labels(CLEAN, 0.2, "asymmetric", seed=4, flips=CIFAR10_FLIPS)
    path = noise.save(tmp_path / "sub" / "noise.json")
    data = json.loads(path.read_text())
    assert {"kind", "rate", "seed", "labels", "clean_fingerprint", "realised_rate"} <= set(data)
    back = load_noisy_labels(path, CLEAN)
    assert torch.equal(back.labels, noise.labels) and back.kind == "asymmetric" and back.seed == 4
    assert back.flips == noise.flips and back.rate == 0.2
    assert back.realised_rate == pytest.approx(noise.realised_rate)
    with pytest.raises(ValueError, match="holds 20000 noisy labels but the data set has 19999"):
        load_noisy_labels(path, CLEAN[:-1])
    with pytest.raises(ValueError, match="do not match"):
        load_noisy_labels(path, CLEAN.flip(0))
    with pytest.raises(ValueError, match="made for 10 classes, not 5"):
        load_noisy_labels(path, CLEAN, num_classes=5)
    with pytest.raises(FileNotFoundError, match="make_noisy_labels"):
        load_noisy_labels(tmp_path / "missing.json", CLEAN)
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a noisy-label file"):
        load_noisy_labels(tmp_path / "other.json", CLEAN)


def test_wrapper_serves_noisy_labels_and_keeps_the_clean_ones():
    base = ClutteredDigits("train", "hard", n_train=120, n_test=10, with_boxes=True)
    noise = make_noisy_labels(base.targets, 0.4, "symmetric", seed=0)
    ds = NoisyLabelDataset(base, noise)
    assert len(ds) == 120 and ds.num_classes == 10
    for i in range(len(ds)):
        x, y, box = ds[i]
        assert int(y) == int(noise.labels[i]) and torch.equal(x, base.images[i]) and torch.equal(box, base.boxes[i])
    assert torch.equal(ds.clean_targets, base.targets) and int(ds.corrupted.sum()) > 0
    with pytest.raises(ValueError, match="has 119 items but the noisy labels 120"):
        NoisyLabelDataset(torch.utils.data.Subset(base, range(119)), noise)
    other = make_noisy_labels(base.targets.roll(1), 0.4, "symmetric", seed=0)
    with pytest.raises(ValueError, match="other clean labels"):
        NoisyLabelDataset(base, other)


def test_memorisation_shares():
    clean = torch.tensor([0, 1, 2, 3, 4, 5])
    noise = make_noisy_labels(clean, 0.0, "symmetric", seed=0)
    noise = type(noise)(torch.tensor([0, 1, 2, 9, 9, 9]), clean, "symmetric", 0.5, 0, 10)
    pred = torch.tensor([0, 1, 7, 9, 4, 8])  # corrupted: 3, 4, 5; memorised 1 of 3, resisted 1 of 3
    m = noise.memorisation(pred)
    assert m["noisy_fit"] == pytest.approx(100 / 3) and m["noisy_clean"] == pytest.approx(100 / 3)
    assert m["clean_fit"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="5 predictions for 6"):
        noise.memorisation(pred[:5])


def test_run_experiment_trains_on_shared_noisy_labels_and_reports_memorisation(tmp_path):
    from hncam_utils.data import SETTINGS
    from hncam_utils.experiments import LossSpec, data_tag, run_experiment
    from hncam_utils.train import TrainConfig

    specs = [LossSpec("ce"), LossSpec("ce", base_loss="gce", name="gce")]
    kwargs = dict(data_overrides={"n_train": 64, "n_test": 32}, cache_dir=tmp_path, progress=False,
                  label_noise={"kind": "asymmetric", "rate": 0.4, "seed": 1})
    results = run_experiment("hard", specs, [0], TrainConfig(epochs=1, batch_size=32), **kwargs)
    files = list((tmp_path / "noisy_labels").glob("*.json"))
    tag = data_tag(SETTINGS["hard"].replace(n_train=64, n_test=32)) + "_asym40-s1"
    assert [f.name for f in files] == [f"{tag}.json"]
    clean = ClutteredDigits("train", "hard", n_train=64, n_test=32).targets
    saved = load_noisy_labels(files[0], clean)
    assert saved.kind == "asymmetric" and saved.realised_rate > 0
    for r in results:
        assert {"top1", "top1_peak", "noisy_fit", "noisy_clean", "clean_fit"} <= set(r.metrics)
        assert r.metrics["top1_peak"] >= r.metrics["top1"] - 1e-9
        assert 0 <= r.metrics["noisy_fit"] + r.metrics["noisy_clean"] <= 100 + 1e-9
    names = sorted(p.name for p in (tmp_path / "runs").glob("*.pt"))
    assert names == [f"{tag}_digits_cnn_ce_e1_s0.pt", f"{tag}_digits_cnn_ce_gce0.7_e1_s0.pt"]
    # a second call reloads the same labels and the cached runs
    again = run_experiment("hard", specs, [0], TrainConfig(epochs=1, batch_size=32), **kwargs)
    assert [r.metrics["noisy_fit"] for r in again] == [r.metrics["noisy_fit"] for r in results]
    with pytest.raises(ValueError, match="kind, rate, seed and flips"):
        run_experiment("hard", specs, [0], TrainConfig(epochs=1), data_overrides={"n_train": 64, "n_test": 32},
                       cache_dir=tmp_path, progress=False, label_noise={"kind": "symmetric", "rate": 0.2, "sd": 1})


def test_fashion_runs_train_on_shared_noisy_labels_with_a_spec_model(tmp_path):
    """fashion_runs with label noise (asymmetric: FASHION_FLIPS by default) and a cosine-head spec, on the
    generated fixture: run names carry the noise and the model, memorisation is measured on the clean training
    labels, and a second call reloads labels and runs."""
    from hncam_utils.experiments import FashionSetting, LossSpec, fashion_loaders, fashion_runs

    fs = FashionSetting(n_train=200, n_test=100, epochs=1, seeds=(0,), batch_size=64, fixture=True)
    specs = [LossSpec("ce", name="ce"),
             LossSpec("hnc_kd", hnc_lambda=0.1, base_loss="cosface", model="digits_cnn_cosine", name="cosface+hnc")]
    kwargs = dict(setting=fs, root=tmp_path / "data", cache_dir=tmp_path, progress=False, curves=True,
                  label_noise={"kind": "asymmetric", "rate": 0.4, "seed": 0})
    runs = fashion_runs(specs, **kwargs)
    (file,) = (tmp_path / "noisy_labels").glob("*.json")
    train, _ = fashion_loaders(fs, root=tmp_path / "data", device="cpu")
    noise = load_noisy_labels(file, train.targets)
    assert noise.flips == {c: (p,) for c, p in FASHION_FLIPS.items()} and noise.realised_rate > 0
    tag = file.stem
    assert tag.startswith("fmnist-fixture-200_asym40-s0-")
    names = sorted(p.stem for p in (tmp_path / "runs").glob("*.pt"))
    assert names == [f"{tag}_digits_cnn_ce_e1_s0", f"{tag}_digits_cnn_cosine_hnc_kd_k3_lam0.1_cosface0.35_e1_s0"]
    for r in runs:
        assert {"top1", "top1_peak", "noisy_fit", "noisy_clean", "clean_fit"} <= set(r.metrics)
        assert r.metrics["top1_peak"] >= r.metrics["top1"] - 1e-9
    assert type(runs[1].model).__name__ == "CosineCAMNet"
    again = fashion_runs(specs, **kwargs)
    assert [r.metrics["noisy_fit"] for r in again] == [r.metrics["noisy_fit"] for r in runs]
