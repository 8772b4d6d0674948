#!/usr/bin/env python
"""Training throughput (images/s) of CE vs CE + HNC_mse vs CE + HNC_kd, and the DeviceLoader alone against a
torchvision DataLoader.  Not a test; see benchmarks/README.md for recorded figures.

Part 1, training (``--setting cifar`` and/or ``resnet50``): the real training path, ``hncam_utils.train.fit``,
one epoch per measurement, fed by a ``DeviceLoader`` of random uint8 images (throughput does not depend on
the pictures, and CIFAR/CUB cannot be downloaded everywhere):

  cifar      cifar_resnet18(num_classes=10) on 32 x 32 images, crop 4 + flip on the device, SGD recipe
             (RECIPES["cifar_resnet18"]), k = 3.
  resnet50   torchvision resnet50 (random weights) with a new 200-class head on 224 x 224 images, flip,
             RECIPES["resnet50_finetune"] (10x lr on the head), k = 10.

The three losses are INTERLEAVED: after a warm-up epoch each, every repetition trains one epoch with each loss,
each from the same initial weights, in an order that rotates between repetitions, so drift (clock, other jobs) hits all three alike. An epoch's
time is fit's own ``seconds`` (measured after the epoch's single device read-back, so on CUDA it includes all
queued work). On CUDA fit uses bf16 autocast, channels_last and cudnn.benchmark (``--compile`` adds
torch.compile). Reported: median images/s per loss, its IQR, and the median of the per-repetition ratio
``images/s(loss) / images/s(CE)``.

Part 2, loader (``--setting loader``): one epoch of 50,000 CIFAR-shaped images (random crop with padding 4 +
flip + normalisation), batch 512, on the same device:

  DeviceLoader          the whole split on the device as uint8, batches augmented there
  DataLoader(v2, w=N)   torchvision.transforms.v2 per image (RandomCrop(32, padding=4), RandomHorizontalFlip,
                        ToDtype, Normalize) in a torch DataLoader with N workers, then .to(device)

and compares the DeviceLoader's images/s with the CIFAR training images/s of part 1 (target: >= 5x).

Examples:
    python benchmarks/throughput.py                                # everything, auto device
    python benchmarks/throughput.py --setting cifar --repeats 5 --json out.json
    python benchmarks/throughput.py --device cuda --compile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hncam_utils.data import DeviceLoader  # noqa: E402
from hncam_utils.models import TorchvisionCAM, cifar_resnet18  # noqa: E402
from hncam_utils.runtime import get_device, seed_everything  # noqa: E402
from hncam_utils.train import recipe  # noqa: E402

LOSSES = {"ce": dict(loss="ce", hnc_lambda=0.0), "hnc_mse": dict(loss="hnc_mse", hnc_lambda=0.07),
          "hnc_kd": dict(loss="hnc_kd", hnc_lambda=0.1)}


def _q(values: List[float], q: float) -> float:
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _random_images(n: int, size: int, channels: int = 3, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8),
            torch.randint(0, classes, (n,), generator=g))


def bench_training(setting: str, dev: torch.device, args) -> Dict:
    from hncam_utils.train import fit

    if setting == "cifar":
        batch = args.batch_size or (512 if dev.type == "cuda" else 32)
        steps = args.steps or (40 if dev.type == "cuda" else 4)
        x, y = _random_images(batch * steps, 32, classes=10)
        loader = DeviceLoader(x, y, crop=4, flip=True, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), device=dev)
        base = recipe("cifar_resnet18", epochs=1, batch_size=batch, k=3, compile=args.compile, schedule="constant")

        def build():
            return cifar_resnet18(num_classes=10)
    else:
        from torchvision.models import resnet50

        batch = args.batch_size or (128 if dev.type == "cuda" else 8)
        steps = args.steps or (20 if dev.type == "cuda" else 3)
        x, y = _random_images(batch * steps, 224, classes=200)
        loader = DeviceLoader(x, y, flip=True, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), device=dev)
        base = recipe("resnet50_finetune", epochs=1, batch_size=batch, k=10, compile=args.compile,
                      schedule="constant")

        def build():
            return TorchvisionCAM(resnet50(weights=None, num_classes=200))

    # every measured epoch starts from the same initial weights, so the losses differ in nothing but the loss
    # (weights trained on random labels drift apart and change the arithmetic, e.g. denormal numbers on CPUs)
    seed_everything(0)
    model = build().to(dev)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    times: Dict[str, List[float]] = {name: [] for name in LOSSES}
    names = list(LOSSES)
    n_images = loader.num_samples
    for rep in range(args.warmup + args.repeats):
        order = names[rep % 3:] + names[: rep % 3]
        for name in order:
            cfg = base.replace(seed=rep, **LOSSES[name])
            model.load_state_dict(initial)
            hist = fit(model, loader, cfg, device=dev, progress=False)
            if rep >= args.warmup:
                times[name].append(hist["seconds"][0])
    rows = {}
    for name in names:
        ips = [n_images / t for t in times[name]]
        ratios = [(n_images / t) / (n_images / c) for t, c in zip(times[name], times["ce"])]
        rows[name] = {"median_ips": statistics.median(ips), "q25": _q(ips, 0.25), "q75": _q(ips, 0.75),
                      "median_steps_per_s": statistics.median(ips) / batch,
                      "paired_ratio": statistics.median(ratios), "paired_ratios": ratios, "seconds": times[name]}
    return {"setting": setting, "batch": batch, "steps_per_epoch": steps, "images_per_epoch": n_images,
            "k": base.k, "losses": rows}


def bench_loader(dev: torch.device, args) -> Dict:
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    n, batch = args.loader_images, 512
    x, y = _random_images(n, 32, classes=10)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    dl = DeviceLoader(x, y, batch_size=batch, crop=4, flip=True, mean=mean, std=std, device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def run_device(epoch):
        sync()
        t = time.perf_counter()
        last = None
        for xb, yb in dl.epoch_batches(epoch):
            last = xb
        float(last.sum())  # wait for the last batch
        sync()
        return time.perf_counter() - t

    transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

    class Images(Dataset):
        def __len__(self):
            return n

        def __getitem__(self, i):
            return transform(x[i]), y[i]

    def run_torch(workers):
        loader = DataLoader(Images(), batch_size=batch, shuffle=True, num_workers=workers,
                            pin_memory=dev.type == "cuda", persistent_workers=False)
        sync()
        t = time.perf_counter()
        last = None
        for xb, yb in loader:
            last = xb.to(dev, non_blocking=True)
        float(last.sum())
        sync()
        return time.perf_counter() - t

    run_device(0)  # warm-up
    paths = {"DeviceLoader": run_device}
    for w in args.workers:
        paths[f"DataLoader(v2, workers={w})"] = (lambda w_: (lambda epoch: run_torch(w_)))(w)
    times: Dict[str, List[float]] = {p: [] for p in paths}
    names = list(paths)
    for rep in range(args.loader_repeats):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            times[name].append(paths[name](rep + 1))
    return {"images": n, "batch": batch,
            "paths": {p: {"median_ips": statistics.median([n / t for t in ts]), "seconds": ts}
                      for p, ts in times.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--setting", choices=["cifar", "resnet50", "loader", "all"], default="all")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="training steps per measured epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--loader-images", type=int, default=50000)
    p.add_argument("--loader-repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="*", default=[0, 2])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = get_device(None if args.device == "auto" else args.device)
    env = {"device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
           "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "cpu_count": os.cpu_count(), "load_before": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    print("environment:", env, flush=True)
    out: Dict = {"environment": env}
    settings = ["cifar", "resnet50", "loader"] if args.setting == "all" else [args.setting]
    for s in settings:
        t0 = time.perf_counter()
        if s == "loader":
            res = bench_loader(dev, args)
            print(f"\nloader: {res['images']:,} CIFAR-shaped images, crop 4 + flip + normalise, batch {res['batch']}, "
                  f"on {dev}")
            for name, r in res["paths"].items():
                print(f"  {name:28s} {r['median_ips']:>12,.0f} images/s")
        else:
            res = bench_training(s, dev, args)
            print(f"\n{s}: batch {res['batch']}, {res['steps_per_epoch']} steps/epoch, k = {res['k']}, on {dev}")
            print(f"  {'loss':8s} {'median img/s':>13s} {'IQR':>19s} {'steps/s':>8s} {'paired x CE':>12s} {'per-repetition ratios':s}")
            for name, r in res["losses"].items():
                per_rep = " ".join(f"{x:.2f}" for x in r["paired_ratios"])
                print(f"  {name:8s} {r['median_ips']:>13.1f} {r['q25']:>9.1f}-{r['q75']:<9.1f} "
                      f"{r['median_steps_per_s']:>8.3f} {r['paired_ratio']:>12.3f} {per_rep}")
        res["wall_s"] = time.perf_counter() - t0
        print(f"  ({res['wall_s']:.0f} s, load average {os.getloadavg()[0]:.2f})", flush=True)
        out[s] = res
    if "cifar" in out and "loader" in out:
        train_ips = out["cifar"]["losses"]["ce"]["median_ips"]
        load_ips = out["loader"]["paths"]["DeviceLoader"]["median_ips"]
        out["loader_over_training"] = load_ips / train_ips
        print(f"\nDeviceLoader delivers {load_ips / train_ips:,.0f}x the images/s that CIFAR ResNet-18 training "
              f"consumes on {dev} (target >= 5x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
