"""`python -m hncam_utils train` on one process and on two gloo processes, on a generated image-folder fixture.

The fixture: 3 classes of 20x20 PNG images (8 per class for training, 3 for validation: 9 is odd, so two ranks
cannot split it evenly), a 4-channel digits_cnn, 2 epochs of 6 steps. Fixture numbers check the machinery;
they are not results. Runs of several processes start real processes (gloo on the loopback interface).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hncam_utils import distributed as D
from hncam_utils.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("train_worker.py")
SMALL = ["--model", "digits_cnn", "--width", "4", "--image-size", "16", "--epochs", "2", "--batch-size", "4",
         "--loss", "hnc_kd", "--k", "2", "--seed", "3", "--no-progress", "--checkpoint-every", "2"]


def make_image_folder(root: Path, classes: int = 3, train: int = 8, val: int = 3, size: int = 20) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("val", val)):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                img[..., c % 3] += 150
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("imagefolder"))


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the OMP_NUM_THREADS=1 processes
    yield
    torch.set_num_threads(before)


def args_for(folder, out, *extra):
    return ["--data", "imagefolder", "--data-root", str(folder), *SMALL, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory):
    """An uninterrupted single-process run (in this process, one thread)."""
    out = tmp_path_factory.mktemp("reference")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert D.main(args_for(folder, out)) == 0
    finally:
        torch.set_num_threads(before)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def launch(world: int, argv, timeout=240, **extra):
    """Start ``world`` processes of tests/train_worker.py as torchrun would (RANK, WORLD_SIZE, MASTER_*)."""
    port = free_port()
    procs = []
    for rank in range(world):
        env = env_for(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=world, LOCAL_WORLD_SIZE=world, MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=port, **extra)
        procs.append(subprocess.Popen([sys.executable, str(WORKER), *argv], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        results.append((p.returncode, out, err))
    return results


def same_weights(a: Path, b: Path) -> bool:
    sa = load_checkpoint(a / "checkpoint.pt")["model"]
    sb = load_checkpoint(b / "checkpoint.pt")["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------ pieces


@pytest.mark.parametrize("n,world", [(9, 2), (9, 4), (10, 3), (1, 2)])
def test_shard_sampler_gives_each_index_to_exactly_one_rank(n, world):
    seen = [i for r in range(world) for i in D.ShardSampler(n, r, world)]
    assert sorted(seen) == list(range(n))
    assert sum(len(D.ShardSampler(n, r, world)) for r in range(world)) == n


def test_resumable_sampler_continues_the_epoch_and_set_epoch_changes_the_order():
    data = list(range(11))
    ranks = [D.ResumableDistributedSampler(data, num_replicas=2, rank=r, shuffle=True, seed=5) for r in range(2)]
    for s in ranks:
        s.set_epoch(1)
    full = [list(s) for s in ranks]
    assert sorted(full[0] + full[1])[:11] != [] and set(full[0] + full[1]) == set(data)  # padded to 12, all present
    assert len(full[0]) == len(full[1]) == 6
    ranks[1].set_start(4)
    assert list(ranks[1]) == full[1][4:] and len(ranks[1]) == 2
    ranks[1].set_epoch(2)
    assert ranks[1].start == 0 and list(ranks[1]) != full[1]
    with pytest.raises(ValueError):
        ranks[0].set_start(7)


def test_seeded_augmentation_depends_on_seed_epoch_and_index_only():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(3)

    wrapped = D.SeededAugmentation(Noisy(), seed=1)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = wrapped[2]
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is untouched
    assert torch.equal(wrapped[2], a) and not torch.equal(wrapped[3], a)
    wrapped.epoch = 1
    assert not torch.equal(wrapped[2], a)
    loader = torch.utils.data.DataLoader(wrapped, batch_size=2, num_workers=2)  # workers draw the same
    assert torch.equal(torch.cat(list(loader)), torch.stack([wrapped[i] for i in range(4)]))


def test_official_lambdas():
    assert D.official_lambda("hnc_mse", "resnet101") == 0.07 and D.official_lambda("hnc_mse", "resnet152") == 0.07
    assert D.official_lambda("hnc_kd", "resnet101") == 0.0065 and D.official_lambda("hnc_kd", "resnet152") == 0.0048


def test_help_documents_the_imagenet_recipe_and_several_machines(capsys):
    from hncam_utils.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--data {cifar10,cifar100,cub200,imagefolder}", "--data-root", "--pretrained", "--hnc-lambda",
                   "--checkpoint-every STEPS", "--k K", "--device", "--seed", "--lr",
                   "torchrun --standalone --nproc-per-node=8", "--model resnet101", "--k 100", "--hnc-lambda 0.0065",
                   "0.07", "--nnodes=2", "--rdzv-endpoint"):
        assert needle in text, needle


def _fake_torchrun(monkeypatch, device: str, gpus: int = 8, **env):
    """torchrun's environment and a machine with ``gpus`` GPUs, faked: records what init_world asks of torch."""
    calls = {}
    for key, value in {"WORLD_SIZE": 16, "RANK": 9, "LOCAL_RANK": 1, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": 29400,
                       **env}.items():
        monkeypatch.setenv(key, str(value))
    monkeypatch.setattr(D, "get_device", lambda requested: torch.device(device))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", lambda dev: calls.__setitem__("set_device", dev))
    monkeypatch.setattr(D.dist, "init_process_group",
                        lambda backend, **kw: calls.update(backend=backend, **kw))
    monkeypatch.setattr(D.dist, "barrier", lambda *a, **k: calls.__setitem__("barrier", True))
    return calls


def test_nccl_on_the_gpu_of_local_rank_gloo_on_cpus(monkeypatch):
    """What can be checked without a GPU: the backend, the device of each process and what DDP is given.
    (NCCL itself never ran here; see the README.)"""
    calls = _fake_torchrun(monkeypatch, "cuda")
    world = D.init_world("cuda", 30)
    # rank 9 of 16 is the second process (LOCAL_RANK 1) of the second machine: its GPU is cuda:1, not cuda:9
    assert (world.rank, world.size, world.local_rank, world.backend) == (9, 16, 1, "nccl")
    assert world.device == torch.device("cuda", 1) == calls["set_device"] == calls["device_id"]
    assert calls["backend"] == "nccl" and (calls["rank"], calls["world_size"]) == (9, 16) and calls["barrier"]
    assert calls["timeout"].total_seconds() == 30

    calls = _fake_torchrun(monkeypatch, "cpu")
    world = D.init_world("cpu", 30)
    assert world.backend == calls["backend"] == "gloo" and world.device == torch.device("cpu")
    assert "device_id" not in calls and "set_device" not in calls

    _fake_torchrun(monkeypatch, "cuda", gpus=8, LOCAL_RANK=8)
    with pytest.raises(D.UsageError, match="LOCAL_RANK 8 but this machine has 8 GPU"):
        D.init_world("cuda", 30)
    _fake_torchrun(monkeypatch, "mps")
    with pytest.raises(D.UsageError, match="no backend for mps"):
        D.init_world("mps", 30)

    built = []

    class FakeDDP:
        def __init__(self, module, **kwargs):
            built.append(kwargs)

    monkeypatch.setattr(D.nn.parallel, "DistributedDataParallel", FakeDDP)
    model = torch.nn.Linear(2, 2)
    assert D.wrap_ddp(model, D.World(0, 1, 0, torch.device("cpu"))) is model and built == []
    D.wrap_ddp(model, D.World(9, 16, 1, torch.device("cuda", 1), "nccl"))
    D.wrap_ddp(model, D.World(1, 2, 1, torch.device("cpu"), "gloo"))
    assert built == [{"device_ids": [1], "output_device": 1}, {}]


# ------------------------------------------------------------------------------------------ one process


@pytest.mark.slow
def test_single_process_run_checkpoint_and_evaluation(folder, reference, one_thread, capsys, tmp_path):
    state = load_checkpoint(reference / "checkpoint.pt")  # weights_only=True
    assert state["epoch"] == 2 and state["step"] == 0 and state["world_size"] == 1
    hist = state["history"]
    assert hist["epoch"] == [1.0, 2.0] and hist["val_images"] == [9.0, 9.0] and all(h > 0 for h in hist["train_hnc"])
    assert json.loads((reference / "history.json").read_text())["history"]["val_top1"] == hist["val_top1"]
    # the saved weights give the logged validation numbers when evaluated alone
    model, _ = D.load_model(reference)
    val, classes = D.build_datasets("imagefolder", folder, 16, False)[1:]
    assert classes == ["class0", "class1", "class2"]
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        logits = model(x).logits
    assert abs(float(torch.nn.functional.cross_entropy(logits, y)) - hist["val_loss"][-1]) < 1e-5
    assert int((logits.argmax(1) == y).sum()) == round(hist["val_top1"][-1] * 9 / 100)
    # a finished run is not trained again; a run with other settings is refused
    stamp = (reference / "checkpoint.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert D.main(args_for(folder, reference)) == 0
    assert "finished run" in capsys.readouterr().out and (reference / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert D.main(args_for(folder, reference, "--lr", "0.5")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "other settings" in err and "'lr'" in err and err.count("\n") == 1


@pytest.mark.slow
def test_single_process_killed_mid_epoch_resumes_to_the_same_weights(folder, reference, one_thread, tmp_path):
    out = tmp_path / "run"
    # killed (SIGKILL) right after step 9 of 12, in epoch 2; the last checkpoint is from step 8; 2 loader workers
    proc = subprocess.run([sys.executable, str(WORKER), *args_for(folder, out, "--workers", "2")], capture_output=True,
                          text=True, timeout=240, env=env_for(HNCAM_TEST_KILL_AT_STEP=9))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = load_checkpoint(out / "checkpoint.pt")
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 2, 8)
    assert not same_weights(out, reference)
    assert D.main(args_for(folder, out)) == 0  # the same command resumes (here without workers)
    assert same_weights(out, reference)
    assert load_checkpoint(out / "checkpoint.pt")["history"]["train_loss"] == \
        load_checkpoint(reference / "checkpoint.pt")["history"]["train_loss"]


@pytest.mark.slow
def test_cifar10_and_cub200_from_format_faithful_fixtures(tmp_path, monkeypatch, one_thread, capsys):
    import functools

    import hncam_utils.data as data
    from hncam_utils.data import make_cifar_fixture, make_cub_fixture

    make_cifar_fixture(tmp_path / "data", "cifar10", per_batch=4, test_size=6)
    # the fixture cannot have the real batch files' MD5s: load it as load_cifar's own tests do
    monkeypatch.setattr(data, "load_cifar", functools.partial(data.load_cifar, verify=False))
    small = ["--model", "digits_cnn", "--width", "4", "--epochs", "1", "--no-progress"]
    rc = D.main(["--data", "cifar10", "--data-root", str(tmp_path / "data"), *small, "--batch-size", "10",
                 "--loss", "hnc_mse", "--out", str(tmp_path / "c10")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "cifar10 (20 train / 6 val images, 10 classes)" in out and "k=9" in out and "(6 images)" in out

    make_cub_fixture(tmp_path / "cub", num_classes=4, per_class=4)
    rc = D.main(["--data", "cub200", "--data-root", str(tmp_path / "cub"), *small, "--image-size", "32",
                 "--batch-size", "4", "--loss", "hnc_kd", "--k", "2", "--out", str(tmp_path / "cub-out")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "cub200 (8 train / 8 val images, 4 classes)" in out and "(8 images)" in out


def test_fit_and_the_train_command_share_one_training_step(folder, tmp_path, monkeypatch, one_thread):
    """One step function (train._train_step) serves fit and the command, so their training cannot drift."""
    from hncam_utils import train as train_mod
    from hncam_utils.models import digits_cnn

    assert D._train_step is train_mod._train_step
    original, calls = train_mod._train_step, []

    def counting(*args, **kwargs):
        calls.append(kwargs.get("check_now"))
        return original(*args, **kwargs)

    monkeypatch.setattr(D, "_train_step", counting)
    monkeypatch.setattr(train_mod, "_train_step", counting)
    assert D.main(args_for(folder, tmp_path / "cmd", "--epochs", "1")) == 0
    assert len(calls) == 6  # 24 images, batch 4: every step of the command went through it
    calls.clear()
    train = D.build_datasets("imagefolder", folder, 16, False)[0]
    train_mod.fit(digits_cnn(3, in_channels=3, width=4), train, train_mod.TrainConfig(epochs=1, batch_size=8),
                  device="cpu", progress=False)
    assert calls == [f"epoch 1, step {i}" for i in (1, 2, 3)]  # and every step of fit (checked at once on the CPU)


READBACKS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "cpu", "numpy")


def test_the_train_command_reads_nothing_back_per_step(folder, tmp_path, monkeypatch, one_thread):
    """Off the CPU a read-back stalls the GPU queue: the command's read-backs do not grow with the number of
    steps (6 steps of 4 images against 3 of 8: the same images, so the data pipeline's host work is equal)."""
    from hncam_utils import losses as losses_mod

    counts = []
    for batch in ("4", "8"):
        calls = []
        with monkeypatch.context() as m:
            m.setattr(losses_mod, "_READBACK_FREE", ())  # the loss behaves as on a GPU
            for name in READBACKS:
                def wrapper(self, *args, _original=getattr(torch.Tensor, name), _name=name, **kwargs):
                    calls.append(_name)
                    return _original(self, *args, **kwargs)

                m.setattr(torch.Tensor, name, wrapper)
            rc = D.main(args_for(folder, tmp_path / batch, "--epochs", "1", "--batch-size", batch,
                                 "--checkpoint-every", "1000"))
        assert rc == 0
        counts.append(sorted(calls))
    assert counts[0] == counts[1]


# ------------------------------------------------------------------------------------------ bad input, one process


def bad_input_cases(folder: Path, tmp: Path):
    (tmp / "a_file").write_text("x")
    return {
        "pretrained without weights": (args_for(folder, tmp / "o1", "--pretrained"), "has no pretrained weights"),
        "k too large": (args_for(folder, tmp / "o2", "--k", "5"), "--k 5 does not fit imagefolder: it has 3 classes"),
        "out not writable": (args_for(folder, tmp / "a_file" / "sub"), "is not a writable folder"),
        "no cifar": (["--data", "cifar10", "--data-root", str(tmp / "nothing"), "--out", str(tmp / "o3")],
                     "get_cifar.py"),
        "checkpoint-every 0": (args_for(folder, tmp / "o4", "--checkpoint-every", "0"), "--checkpoint-every must be"),
        "width for a resnet": (["--data", "imagefolder", "--data-root", str(folder), "--model", "resnet18", "--width", "4",
                                "--out", str(tmp / "o5")], "--width applies to digits_cnn only"),
        "no train folder": (args_for(tmp / "empty", tmp / "o6"), "needs"),
        "cuda without a gpu": (args_for(folder, tmp / "o7", "--device", "cuda"), "CUDA is not available"),
    }


@pytest.mark.parametrize("case", ["pretrained without weights", "k too large", "out not writable", "no cifar",
                                  "checkpoint-every 0", "width for a resnet", "no train folder", "cuda without a gpu"])
def test_bad_input_is_one_line_and_status_2(case, folder, tmp_path, capsys):
    if case == "cuda without a gpu" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv, expected = bad_input_cases(folder, tmp_path)[case]
    assert D.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err
    assert "Traceback" not in err


def test_missing_cub200_says_how_to_get_it(tmp_path, capsys):
    rc = D.main(["--data", "cub200", "--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("error: CUB-200-2011 not found") and "get_cub200.py" in err, err


def test_argument_errors_print_on_rank_0_only(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as exc:
        D.main(["--data", "imagefolder", "--loss", "focal", "--out", "x"])
    assert exc.value.code == 2 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit):
        D.main(["--data", "imagefolder", "--loss", "focal", "--out", "x"])
    assert "invalid choice: 'focal'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ two gloo processes


@pytest.mark.slow
def test_two_gloo_processes_torchrun_evaluation_and_exact_resume_after_a_kill(folder, tmp_path):
    # the reference: an uninterrupted run under torchrun
    ref = tmp_path / "torchrun"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "hncam_utils", "train", *args_for(folder, ref)],
                          capture_output=True, text=True, timeout=240, env=env_for())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("epoch 2/2:") == 1  # logs on rank 0 only
    assert "world: 2 process(es) on cpu (gloo), batch 4 = 2 x 2, 6 steps per epoch" in proc.stdout
    state = load_checkpoint(ref / "checkpoint.pt")
    assert state["world_size"] == 2 and state["history"]["val_images"] == [9.0, 9.0]
    # rank 0 saved model.module's weights: one process loads them and finds the logged validation numbers
    model, _ = D.load_model(ref)
    val = D.build_datasets("imagefolder", folder, 16, False)[1]
    x = torch.stack([val[i][0] for i in range(len(val))])
    y = torch.tensor([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        loss = float(torch.nn.functional.cross_entropy(model(x).logits, y))
    assert abs(loss - state["history"]["val_loss"][-1]) < 1e-5

    # the same run, rank 1 killed right after step 5 (last checkpoint: step 4, mid-epoch 1)
    out = tmp_path / "killed"
    (rc0, out0, err0), (rc1, _, err1) = launch(2, args_for(folder, out, "--dist-timeout", "60"),
                                               HNCAM_TEST_KILL_AT_STEP=5, HNCAM_TEST_KILL_RANK=1)
    assert rc1 == -signal.SIGKILL
    assert rc0 == 1 and "lost contact with the other processes" in err0 and "Traceback" not in err0, err0[-3000:]
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 4
    # restarted with the same command: the same weights and history as the uninterrupted run
    (rc0, out0, err0), (rc1, out1, err1) = launch(2, args_for(folder, out))
    assert rc0 == rc1 == 0, err0[-3000:] + err1[-3000:]
    assert "resuming from" in out0 and "epoch 1, step 4/6" in out0 and out1 == ""
    assert same_weights(out, ref)
    assert load_checkpoint(out / "checkpoint.pt")["history"]["train_loss"] == state["history"]["train_loss"]


@pytest.mark.slow
def test_world_larger_than_the_data_stops_every_rank(tmp_path):
    tiny = tmp_path / "tiny"
    make_image_folder(tiny, classes=1, train=1, val=1)
    (rc0, _, err0), (rc1, _, err1) = launch(2, ["--data", "imagefolder", "--data-root", str(tiny), "--model",
                                                "digits_cnn", "--width", "4", "--batch-size", "2",
                                                "--out", str(tmp_path / "o"), "--dist-timeout", "60"])
    assert rc0 == rc1 == 2
    assert err0.startswith("error: 2 processes but the training set has only 1 image(s)") and err0.count("\n") == 1
    assert err1 == ""


@pytest.mark.slow
def test_a_rank_that_cannot_reach_the_others_times_out_clearly(tmp_path, folder):
    env = env_for(RANK=1, LOCAL_RANK=1, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port())
    proc = subprocess.run([sys.executable, "-m", "hncam_utils", "train",
                           *args_for(folder, tmp_path / "o", "--dist-timeout", "2")],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: rank 1 of 2 could not reach the other processes at 127.0.0.1:")
    assert proc.stderr.count("\n") == 1 and "raise --dist-timeout" in proc.stderr


@pytest.mark.slow
def test_bad_input_under_torchrun_names_the_problem_in_torchrun_s_summary(folder, tmp_path):
    """Under torchrun, our one line comes first (rank 0 only) and the launcher's failure summary, which it
    prints whenever a worker exits non-zero, shows that line as the root cause instead of a link to its docs;
    no worker prints a traceback."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "hncam_utils", "train", *args_for(folder, tmp_path / "o", "--k", "5")],
                          capture_output=True, text=True, timeout=240, env=env_for())
    assert proc.returncode != 0
    err = proc.stderr
    line = "error: --k 5 does not fit imagefolder: it has 3 classes"
    assert err.startswith(line) and err.count(line) >= 2, err  # printed once, then in the summary
    root = err[err.index("Root Cause"):]
    assert f"traceback : {line}" in root and "exitcode  : 2" in err, err
    assert "To enable traceback" not in err
    # the one traceback is the launcher's own (torch's files only): no worker printed one
    assert not [f for f in re.findall(r'File "([^"]+)"', err) if "hncam_utils" in f or "tests" in f], err
    assert proc.stdout == ""
