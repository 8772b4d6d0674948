#!/usr/bin/env python
"""How much does the HNC loss add to a training step?  (see benchmarks/README.md)

Three paths are timed per setting:

  ce         CE only:                         F.cross_entropy(logits, y)
  all_cams   CE + HNC on the CAMs of all C classes:
                                               + lam * loss_fn(compute_cams(features, classifier), y)
  topk       CE + HNC on the k selected CAMs only:
                                               + lam * loss_fn.from_features(features, classifier, y, logits=logits)

Settings:

  cifar          a full training step of cifar_resnet18(num_classes=100) on 32x32 inputs:
                 zero_grad, forward, loss, backward, SGD step (momentum 0.9, weight decay 5e-4). k = 10.
  cifar_head     (extra, not in --setting all) the cifar head alone: (B, 512, 4, 4) leaf + Linear(512, 100), k = 10,
                 to see the absolute HNC cost of the cifar setting without the backbone's time and noise.
  imagenet_head  the head only: a random (B, 2048, 7, 7) feature tensor with requires_grad (standing for a
                 ResNet-50 backbone output) and nn.Linear(2048, 1000): GAP + linear, loss, backward to the
                 features and to the head weights (no optimizer step, no backbone). k = 100.

The three paths are measured INTERLEAVED in one process: after a warm-up, every repetition runs each
path once, in an order that rotates from one repetition to the next (ce, all_cams, topk / all_cams,
topk, ce / ...). Slow drift (thermal throttling, other load on the machine, allocator state) therefore
hits all three paths alike. Each step is timed with time.perf_counter; on CUDA, torch.cuda.synchronize()
is called right before the start and right before the end of each timed step.

Reported per path: the median step time, its interquartile range (25th-75th percentile), the ratio of
the path's median to the CE median, and the median (and IQR) of the per-repetition paired ratios
step(path) / step(ce) of the same repetition. The fastest step of each path (and its ratio to the fastest
CE step) is shown too: on a shared CPU, other processes only ever add time, so the minimum is the
estimate least affected by them.

Example:
    python benchmarks/hnc_overhead.py                                  # both settings, variant mse
    python benchmarks/hnc_overhead.py --setting cifar --variant all --json out.json
    python benchmarks/hnc_overhead.py --device cuda --amp              # bf16 autocast on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hncam_utils.cam import compute_cams
from hncam_utils.losses import HNCLoss
from hncam_utils.models import cifar_resnet18
from hncam_utils.runtime import get_device, seed_everything

PATHS = ("ce", "all_cams", "topk")
PATH_LABELS = {
    "ce": "CE only",
    "all_cams": "CE + HNC(compute_cams, all C)",
    "topk": "CE + HNC.from_features (top-k)",
}
SETTINGS = ("cifar", "imagenet_head")  # what --setting all runs
EXTRA_SETTINGS = ("cifar_head",)
HNC_WEIGHT = 0.1  # lambda; it does not change the amount of work

# (batch, repeats, warmup) when not given on the command line
DEFAULTS = {
    ("cifar", "cpu"): (32, 15, 3),
    ("cifar", "gpu"): (128, 100, 10),
    ("cifar_head", "cpu"): (32, 200, 20),
    ("cifar_head", "gpu"): (128, 500, 50),
    ("imagenet_head", "cpu"): (16, 30, 5),
    ("imagenet_head", "gpu"): (64, 200, 20),
}
DEFAULT_K = {"cifar": 10, "cifar_head": 10, "imagenet_head": 100}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _loadavg() -> Optional[float]:
    """1-minute load average (None where the OS has none): other work on the machine inflates CPU timings."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _fmt_load(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp)


def _loss(path: str, logits: Tensor, features: Tensor, classifier: nn.Linear, y: Tensor, loss_fn: HNCLoss) -> Tensor:
    loss = F.cross_entropy(logits, y)
    if path == "all_cams":
        loss = loss + HNC_WEIGHT * loss_fn(compute_cams(features, classifier), y)
    elif path == "topk":
        loss = loss + HNC_WEIGHT * loss_fn.from_features(features, classifier, y, logits=logits)
    return loss


def build_cifar(device: torch.device, batch: int, k: int, variant: str, amp: bool):
    """Return (step(path), check()) for a full CIFAR-100 ResNet-18 training step."""
    model = cifar_resnet18(num_classes=100).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 100, (batch,), device=device)
    loss_fn = HNCLoss(k=k, variant=variant)
    classifier = model.classifier

    def step(path: str) -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            logits, features = model(x)
            loss = _loss(path, logits, features, classifier, y, loss_fn)
        loss.backward()
        optimizer.step()

    def check() -> float:
        with torch.no_grad():
            logits, features = model(x)
            a = loss_fn(compute_cams(features, classifier), y)
            b = loss_fn.from_features(features, classifier, y, logits=logits)
        return abs(float(a) - float(b)) / max(abs(float(a)), 1e-12)

    return step, check


def _build_head(device: torch.device, batch: int, k: int, variant: str, amp: bool,
                dim: int, num_classes: int, size: int):
    """(step(path), check()) for a head alone: GAP + Linear(dim, num_classes) on a (B, dim, size, size) leaf."""
    features = torch.randn(batch, dim, size, size, device=device).relu_().requires_grad_(True)
    head = nn.Linear(dim, num_classes).to(device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    loss_fn = HNCLoss(k=k, variant=variant)

    def step(path: str) -> None:
        features.grad = None
        head.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            logits = head(features.mean(dim=(2, 3)))
            loss = _loss(path, logits, features, head, y, loss_fn)
        loss.backward()

    def check() -> float:
        with torch.no_grad():
            logits = head(features.mean(dim=(2, 3)))
            a = loss_fn(compute_cams(features, head), y)
            b = loss_fn.from_features(features, head, y, logits=logits)
        return abs(float(a) - float(b)) / max(abs(float(a)), 1e-12)

    return step, check


def build_imagenet_head(device: torch.device, batch: int, k: int, variant: str, amp: bool):
    """The ImageNet-sized head: GAP + Linear(2048, 1000) on (B, 2048, 7, 7) (a ResNet-50 backbone output)."""
    return _build_head(device, batch, k, variant, amp, dim=2048, num_classes=1000, size=7)


def build_cifar_head(device: torch.device, batch: int, k: int, variant: str, amp: bool):
    """The head of cifar_resnet18(100) alone: GAP + Linear(512, 100) on (B, 512, 4, 4). Isolates the HNC cost
    of the cifar setting from the (much larger, noisier) backbone time."""
    return _build_head(device, batch, k, variant, amp, dim=512, num_classes=100, size=4)


BUILDERS = {"cifar": build_cifar, "cifar_head": build_cifar_head, "imagenet_head": build_imagenet_head}


def _quantile(values: List[float], q: float) -> float:
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def run_interleaved(step: Callable[[str], None], device: torch.device, repeats: int, warmup: int) -> Dict[str, List[float]]:
    """Time every path once per repetition, rotating the order; warm-up repetitions are discarded."""
    times: Dict[str, List[float]] = {p: [] for p in PATHS}
    for rep in range(warmup + repeats):
        r = rep % len(PATHS)
        order = PATHS[r:] + PATHS[:r]
        for path in order:
            _sync(device)
            t0 = time.perf_counter()
            step(path)
            _sync(device)
            dt = time.perf_counter() - t0
            if rep >= warmup:
                times[path].append(dt)
    return times


def summarize(times: Dict[str, List[float]]) -> Dict[str, Dict[str, float]]:
    ce_med = statistics.median(times["ce"])
    out: Dict[str, Dict[str, float]] = {}
    for p in PATHS:
        t = times[p]
        paired = [a / c for a, c in zip(t, times["ce"])]
        out[p] = {
            "min_ms": 1e3 * min(t),
            "ratio_of_mins": min(t) / min(times["ce"]),
            "median_ms": 1e3 * statistics.median(t),
            "q25_ms": 1e3 * _quantile(t, 0.25),
            "q75_ms": 1e3 * _quantile(t, 0.75),
            "ratio_of_medians": statistics.median(t) / ce_med,
            "paired_ratio_median": statistics.median(paired),
            "paired_ratio_q25": _quantile(paired, 0.25),
            "paired_ratio_q75": _quantile(paired, 0.75),
        }
    return out


def describe(device: torch.device) -> Dict[str, object]:
    info: Dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def print_table(rows: List[Dict[str, object]]) -> None:
    header = (
        f"{'setting':<14} {'variant':<7} {'device':<6} {'batch':>5} {'k':>4} {'path':<32} "
        f"{'median ms':>10} {'IQR ms':>17} {'x CE':>6} {'paired x CE [IQR]':>22} {'min ms':>9} {'min x CE':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        for p in PATHS:
            s = row["stats"][p]  # type: ignore[index]
            iqr = f"{s['q25_ms']:.1f}-{s['q75_ms']:.1f}"
            paired = f"{s['paired_ratio_median']:.3f} [{s['paired_ratio_q25']:.3f}-{s['paired_ratio_q75']:.3f}]"
            print(
                f"{row['setting']:<14} {row['variant']:<7} {row['device']:<6} {row['batch']:>5} {row['k']:>4} "
                f"{PATH_LABELS[p]:<32} {s['median_ms']:>10.1f} {iqr:>17} {s['ratio_of_medians']:>6.3f} {paired:>22} "
                f"{s['min_ms']:>9.1f} {s['ratio_of_mins']:>8.3f}"
            )
        print()


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Training-step time of CE vs CE + HNC (all-class CAMs) vs CE + HNC.from_features (top-k), "
        "measured interleaved. See benchmarks/README.md.",
    )
    ap.add_argument("--setting", choices=SETTINGS + EXTRA_SETTINGS + ("all",), default="all",
                    help="all = cifar + imagenet_head (default); cifar_head = the cifar head alone (extra)")
    ap.add_argument("--variant", choices=("mse", "kd", "all"), default="mse", help="HNC variant ('all': both)")
    ap.add_argument("--device", default="auto", help="auto / cuda / mps / cpu (auto: hncam_utils.runtime.get_device)")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="batch size (default: cifar 128 on GPU / 32 on CPU; imagenet_head 64 on GPU / 16 on CPU)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed repetitions per path (default: cifar 100 GPU / 15 CPU; imagenet_head 200 / 30; cifar_head 500 / 200)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed warm-up repetitions (default: cifar 10 GPU / 3 CPU; imagenet_head 20 / 5; cifar_head 50 / 20)")
    ap.add_argument("--cifar-k", type=int, default=DEFAULT_K["cifar"], help="k for cifar and cifar_head (default 10)")
    ap.add_argument("--head-k", type=int, default=DEFAULT_K["imagenet_head"], help="k for imagenet_head (default 100)")
    ap.add_argument("--amp", action="store_true", help="CUDA only: run forward and loss under torch.autocast(bfloat16)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="OUT", default=None, help="write the results (and raw step times) to this file")
    args = ap.parse_args(argv)
    for name in ("batch_size", "repeats", "cifar_k", "head_k", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.warmup is not None and args.warmup < 0:
        ap.error(f"--warmup must be >= 0, got {args.warmup}")
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        device = get_device(None if args.device == "auto" else args.device)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.amp and device.type != "cuda":
        print(f"error: --amp is for CUDA (bf16 autocast); device is {device}", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    kind = "cpu" if device.type == "cpu" else "gpu"
    settings = SETTINGS if args.setting == "all" else (args.setting,)
    variants = ("mse", "kd") if args.variant == "all" else (args.variant,)
    env = describe(device)

    print("Timed: one training step per call, wall clock (time.perf_counter"
          + (", torch.cuda.synchronize before and after" if device.type == "cuda" else "") + ").")
    print("  cifar:         zero_grad + forward of cifar_resnet18(100) on 32x32 + loss + backward + SGD step")
    print("  imagenet_head: GAP + Linear(2048,1000) on a (B,2048,7,7) leaf tensor + loss + backward (no optimizer)")
    if "cifar_head" in settings:
        print("  cifar_head:    GAP + Linear(512,100) on a (B,512,4,4) leaf tensor + loss + backward (no optimizer)")
    print("Paths interleaved round-robin (order rotated each repetition) after warm-up; HNC weight "
          f"lambda={HNC_WEIGHT}; amp={'bf16' if args.amp else 'off'}.")
    print("Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    print()

    rows: List[Dict[str, object]] = []
    for setting in settings:
        batch_d, repeats_d, warmup_d = DEFAULTS[(setting, kind)]
        batch = args.batch_size or batch_d
        repeats = args.repeats or repeats_d
        warmup = args.warmup if args.warmup is not None else warmup_d
        k = args.head_k if setting == "imagenet_head" else args.cifar_k
        for variant in variants:
            seed_everything(args.seed)
            step, check = BUILDERS[setting](device, batch, k, variant, args.amp)
            rel_diff = check()  # fp32 sanity check: both HNC paths give the same value
            load_before = _loadavg()
            start = time.perf_counter()
            times = run_interleaved(step, device, repeats, warmup)
            wall = time.perf_counter() - start
            load_after = _loadavg()
            row = {
                "setting": setting, "variant": variant, "device": device.type, "batch": batch, "k": k,
                "repeats": repeats, "warmup": warmup, "amp": args.amp, "wall_s": wall,
                "hnc_paths_rel_diff": rel_diff, "loadavg_1min_before": load_before, "loadavg_1min_after": load_after,
                "stats": summarize(times),
                "times_ms": {p: [1e3 * t for t in times[p]] for p in PATHS},
            }
            rows.append(row)
            print(f"[{setting}/{variant}] {repeats} timed x 3 paths after {warmup} warm-up, {wall:.1f} s; "
                  f"HNC all-class vs top-k value rel. diff {rel_diff:.1e}; "
                  f"1-min load average {_fmt_load(load_before)} -> {_fmt_load(load_after)}", flush=True)
            del step, check
            if device.type == "cuda":
                torch.cuda.empty_cache()

    print()
    print_table(rows)
    print("median ms / IQR ms: per-step time (25th-75th percentile); x CE: median / CE median; "
          "paired x CE: median [IQR] of step/CE step within the same repetition; min ms / min x CE: fastest step "
          "and its ratio to the fastest CE step (least affected by other load on the machine).")

    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "environment": env, "hnc_weight": HNC_WEIGHT, "results": rows}, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
