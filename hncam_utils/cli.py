"""Command line: ``python -m hncam_utils compare`` (also installed as ``hncam compare``), and
``python -m hncam_utils train`` (one device or ``torchrun``; see :mod:`hncam_utils.distributed`).

``compare`` trains CE, CE+HNC_mse and CE+HNC_kd on Cluttered Digits for several seeds, prints one table
(accuracy mean ± std, negative-CAM peak and ratio, num_posi, localization, seconds per epoch) and the paired
accuracy differences to CE, and saves a figure of the training curves and a CAM grid (image, ground-truth
CAM, top negative CAMs, for each loss, on one shared colour scale) plus the raw results as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

__all__ = ["main", "COMPARE_PROFILES", "CompareProfile"]


@dataclass(frozen=True)
class CompareProfile:
    """Settings of one ``compare`` profile."""

    setting: str
    seeds: int
    epochs: int
    data_overrides: Dict[str, int] = field(default_factory=dict)
    about: str = ""


COMPARE_PROFILES: Dict[str, CompareProfile] = {
    "smoke": CompareProfile("easy", seeds=2, epochs=1, data_overrides={"n_train": 256, "n_test": 128},
                            about="CI check of the whole pipeline; results mean nothing"),
    "cpu": CompareProfile("easy", seeds=3, epochs=3, data_overrides={"n_train": 6000},
                          about="about 10 minutes on 2 CPU cores"),
    "gpu": CompareProfile("hard", seeds=5, epochs=15, about="the hard setting, where accuracy is not saturated"),
}


def _add_compare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="train CE vs CE+HNC_mse vs CE+HNC_kd on Cluttered Digits and report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(COMPARE_PROFILES), default=None,
                   help="smoke (CI, <1 min), cpu (default without CUDA, ~10 min on 2 cores), gpu (default with CUDA)")
    p.add_argument("--setting", choices=["easy", "hard"], default=None, help="Cluttered Digits setting (overrides the profile)")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (0..N-1)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None, help="training canvases")
    p.add_argument("--losses", default="ce,hnc_mse,hnc_kd", help="comma-separated subset of ce,hnc_mse,hnc_kd")
    p.add_argument("--lambda-mse", type=float, default=0.07)
    p.add_argument("--lambda-kd", type=float, default=0.1)
    p.add_argument("-k", type=int, default=3, help="top-k negatives per image")
    p.add_argument("--out", type=Path, default=Path("build/compare"), help="folder for the figures and results.json")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="where trained runs are cached (default: $HNCAM_HOME or ~/.cache/hncam); cached runs are reused")
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _compare(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import torch

    from .data import ClutteredDigits
    from .experiments import (DEFAULT_SPECS, LossSpec, format_table, format_verdicts, paired_difference,
                              run_experiment, summarize)
    from .metrics import gt_and_top_negative_cams
    from .plots import plot_cam_grid, plot_history
    from .runtime import get_device, get_profile
    from .train import TrainConfig

    from ._checks import check_folder
    from .paths import data_home

    profile_name = get_profile(args.profile)
    prof = COMPARE_PROFILES[profile_name]
    # everything a user can get wrong is checked before the first run trains (not after ten minutes)
    check_folder("--out", args.out, writable=True, fix="choose a folder you can write to with --out")
    if args.cache_dir is not None:
        check_folder("--cache-dir", args.cache_dir, writable=True, fix="choose a folder you can write to")
    else:
        check_folder("HNCAM_HOME", data_home(), writable=True, fix="point HNCAM_HOME at a folder you can write to")
    if args.n_train is not None and args.n_train < 1:
        print(f"error: --n-train must be >= 1, got {args.n_train}", file=sys.stderr)
        return 2
    setting = args.setting or prof.setting
    seeds = list(range(args.seeds if args.seeds is not None else prof.seeds))
    epochs = args.epochs if args.epochs is not None else prof.epochs
    overrides = dict(prof.data_overrides)
    if args.setting and args.setting != prof.setting:
        overrides.pop("n_train", None)
    if args.n_train is not None:
        overrides["n_train"] = args.n_train
    wanted = [s.strip() for s in args.losses.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in DEFAULT_SPECS]
    if unknown or not wanted:
        print(f"error: unknown loss(es) {unknown}; choose from {sorted(DEFAULT_SPECS)}", file=sys.stderr)
        return 2
    if not seeds or epochs < 1:
        print("error: need at least one seed and one epoch", file=sys.stderr)
        return 2
    lambdas = {"hnc_mse": args.lambda_mse, "hnc_kd": args.lambda_kd}
    specs: List[LossSpec] = [
        LossSpec("ce") if s == "ce" else LossSpec(s, hnc_lambda=lambdas[s], k=args.k) for s in wanted
    ]
    device = get_device(args.device)
    train = TrainConfig(epochs=epochs)
    print(f"profile={profile_name} ({prof.about}); setting={setting} {overrides or ''}; seeds={seeds}; "
          f"epochs={epochs}; device={device}; threads={torch.get_num_threads()}", flush=True)
    print("recipe: digits_cnn, AdamW lr 2e-3 wd 5e-4, OneCycle (pct_start 0.15), batch 64; "
          + ", ".join(f"{s.label}: lambda={s.hnc_lambda:g} k={s.k}" for s in specs if s.loss != "ce"), flush=True)
    t0 = time.perf_counter()
    results = run_experiment(setting, specs, seeds, train, data_overrides=overrides, cache_dir=args.cache_dir,
                             device=device, progress=not args.no_progress)
    rows = summarize(results)
    table = format_table(rows)
    acc_key = "top1"
    gains = paired_difference(results, acc_key) if "ce" in wanted else {}
    print()
    print(f"Cluttered Digits ({setting}), test set of held-out source digits; mean ± std over {len(seeds)} seed(s)")
    print(table)
    if gains:
        print()
        print("Paired test-accuracy difference to CE (seed s of each loss against seed s of CE), "
              "95% interval from Student's t:")
        print(format_verdicts(gains, baseline="ce", unit="points"))
        for label, g in gains.items():
            print(f"paired accuracy gain of {label} over ce: {g.describe('points')}")
    if profile_name == "smoke":
        print("NOTE: smoke profile: tiny data and one epoch; these numbers check the pipeline, they are not results.")

    args.out.mkdir(parents=True, exist_ok=True)
    histories = {}
    for r in results:
        histories.setdefault(r.label, []).append(r.history)
    fig = plot_history(histories, keys=("train_ce", "train_hnc", "test_acc"))
    fig.savefig(args.out / "training_curves.png", dpi=110)
    test_set = ClutteredDigits("test", setting, **overrides)
    idx = torch.arange(min(4, len(test_set)))
    x, y = test_set.images[idx], test_set.targets[idx]
    cams, classes = {}, {}
    for r in results:
        if r.seed == seeds[0]:
            cams[r.label], classes[r.label] = gt_and_top_negative_cams(r.model, x, y, n=3)
    fig = plot_cam_grid(x, cams, classes)
    fig.savefig(args.out / "cam_grid.png", dpi=110)
    payload = {
        "profile": profile_name,
        "setting": setting,
        "data_overrides": overrides,
        "seeds": seeds,
        "train_config": train.to_dict(),
        "specs": [s.__dict__ for s in specs],
        "summary": rows,
        "paired_accuracy_gain": {label: g.as_dict() for label, g in gains.items()},
        "runs": [{"label": r.label, "seed": r.seed, "metrics": r.metrics, "history": r.history} for r in results],
        "wall_seconds": time.perf_counter() - t0,
    }
    (args.out / "results.json").write_text(json.dumps(payload, indent=2))
    (args.out / "results.md").write_text(table + "\n")
    print(f"\nwrote {args.out / 'training_curves.png'}, {args.out / 'cam_grid.png'}, {args.out / 'results.json'} "
          f"({time.perf_counter() - t0:.0f} s in all)")
    return 0


def _add_train(sub: argparse._SubParsersAction) -> None:
    from .distributed import EPILOG, __doc__ as about, add_arguments

    p = sub.add_parser("train", help="train on CIFAR-10/100, CUB-200 or an image folder, on one device or under "
                                     "torchrun (DistributedDataParallel)",
                       description=about, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``python -m hncam_utils``."""
    parser = argparse.ArgumentParser(prog="python -m hncam_utils", description="HNC-CAM course tools")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_compare(sub)
    _add_train(sub)
    env = sub.add_parser("env", help="print versions, device and profile")
    env.set_defaults(command="env")
    args = parser.parse_args(argv)
    # a user error (bad option, environment variable, folder) ends in one line on stderr and exit status 2,
    # never in a traceback; anything else is a bug and keeps its traceback
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted: finished runs are cached; run the same command again to resume", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "compare":
        return _compare(args)
    if args.command == "train":
        from .distributed import run

        return run(args)
    if args.command == "env":
        from .runtime import describe_environment

        for key, val in describe_environment().items():
            print(f"{key:12s} {val}")
        return 0
    return 2  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
