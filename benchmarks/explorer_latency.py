#!/usr/bin/env python
"""How long does the CAM explorer take to redraw?  (see benchmarks/README.md)

The explorer (hncam_utils.widgets.CAMExplorer) is built with its widgets, three models side by side and the
Cluttered Digits test set, and driven the way a user drives it: by setting the value of a control
(the class menu, the opacity slider, the method menu, the model list, the image index). Each change runs the
widget's own callback: compute the maps, colour them on the shared scale, encode the PNG panels and push
them into the widgets. The time of that whole callback is measured (time.perf_counter). What the browser
then does with the new PNGs is not included.

Kinds of change (each repetition runs every kind once, in an order that rotates from one repetition to
the next, so slow drift of the machine hits all kinds alike):

  class         rank -> next rank (ground truth, 1st, 2nd, 3rd negative) on an image already shown
  opacity       opacity slider moved, same image and class
  method        CAM <-> Grad-CAM on an image already shown
  models        one model hidden / shown again
  image (new)   an image not seen before: every model's backbone runs once (the only change that may)
  image (seen)  back to an image already shown: from the feature cache

A pixel method (Integrated Gradients) needs gradients through the whole network; its first computation for an
(image, model, class) is timed separately ("ig (first)"), then it is cached.

The weights do not change the amount of work, so the models are freshly initialised (use --course to load the
course's cached CE / HNC runs instead; they are trained first when missing).

Examples:
    python benchmarks/explorer_latency.py
    python benchmarks/explorer_latency.py --model cifar_resnet18 --repeats 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

from hncam_utils.data import ClutteredDigits
from hncam_utils.experiments import COURSE_DIGITS
from hncam_utils.models import build_model
from hncam_utils.runtime import seed_everything
from hncam_utils.widgets import CAMExplorer

KINDS = ("class", "opacity", "method", "models", "image (new)", "image (seen)")


def quantile(values: List[float], q: float) -> float:
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="digits_cnn", choices=("digits_cnn", "cifar_resnet18"),
                        help="network (cifar_resnet18 runs on 3x48x48 copies of the canvases)")
    parser.add_argument("--course", action="store_true", help="use the course's cached CE / HNC runs (digits_cnn)")
    parser.add_argument("--repeats", type=int, default=30, help="timed repetitions of each kind of change")
    parser.add_argument("--warmup", type=int, default=3, help="untimed repetitions first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default=None, help="write every timing to this file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(0)

    setting = COURSE_DIGITS["cpu"]
    data = ClutteredDigits("test", setting.data_config())
    if args.course:
        from hncam_utils.experiments import course_runs

        runs = course_runs(profile="cpu", seeds=[setting.seeds[0]], progress=False)
        models = {r.label: r.model.cpu().eval() for r in runs}
    else:
        models = {}
        for label in ("ce", "hnc_mse", "hnc_kd"):
            kwargs = {"in_channels": 1} if args.model == "digits_cnn" else {}
            models[label] = build_model(args.model, num_classes=data.num_classes, **kwargs).eval()
    if args.model == "cifar_resnet18" and not args.course:
        images = data.images.expand(-1, 3, -1, -1).contiguous()
        explorer = CAMExplorer(models, images, targets=data.targets)
    else:
        explorer = CAMExplorer(models, data)
    explorer.widget  # builds the controls and draws image 0
    c = explorer._controls

    fresh = iter(range(1, len(data)))
    seen = [0]
    step = {"rank": 0, "opacity": 0, "method": 0, "models": 0}

    def change(kind: str) -> Callable[[], None]:
        if kind == "class":
            step["rank"] = (step["rank"] + 1) % explorer.n_ranks
            return lambda: setattr(c["rank"], "value", step["rank"])
        if kind == "opacity":
            step["opacity"] += 1
            return lambda: setattr(c["opacity"], "value", 0.4 if step["opacity"] % 2 else 0.8)
        if kind == "method":
            step["method"] += 1
            return lambda: setattr(c["method"], "value", "gradcam" if step["method"] % 2 else "cam")
        if kind == "models":
            step["models"] += 1
            value = tuple(models)[:2] if step["models"] % 2 else tuple(models)
            return lambda: setattr(c["models"], "value", value)
        if kind == "image (new)":
            i = next(fresh)
            seen.append(i)
            return lambda: setattr(c["index"], "value", i)
        if kind == "image (seen)":
            i = seen[-2]
            return lambda: setattr(c["index"], "value", i)
        raise ValueError(kind)

    times: Dict[str, List[float]] = {k: [] for k in KINDS}
    runs_before = explorer.backbone_runs
    for rep in range(args.warmup + args.repeats):
        order = KINDS[rep % len(KINDS):] + KINDS[: rep % len(KINDS)]
        for kind in order:
            act = change(kind)
            backbone = explorer.backbone_runs
            t0 = time.perf_counter()
            act()
            dt = 1e3 * (time.perf_counter() - t0)
            if c["message"].value:
                raise SystemExit(f"the explorer showed a message during '{kind}': {c['message'].value}")
            if kind != "image (new)" and explorer.backbone_runs != backbone:
                raise SystemExit(f"'{kind}' ran a backbone; only a new image should")
            if rep >= args.warmup:
                times[kind].append(dt)
    ig = []
    for i in range(min(args.repeats, 10)):
        explorer.update(index=seen[i % len(seen)], rank=i % explorer.n_ranks, method="cam")
        t0 = time.perf_counter()
        c["method"].value = "ig"
        ig.append(1e3 * (time.perf_counter() - t0))
        c["method"].value = "cam"
    times["ig (first)"] = ig

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("n/a",)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"cpu_count {os.cpu_count()}, model {args.model}{' (course runs)' if args.course else ''}, "
          f"{len(models)} models side by side, image {tuple(data.images.shape[-2:])}, "
          f"{args.repeats} repeats after {args.warmup} warm-up, load average {load[0]}")
    print(f"{'change':<14} {'median ms':>10} {'IQR ms':>16} {'max ms':>9}  <= 200 ms?")
    for kind, vals in times.items():
        med = statistics.median(vals)
        target = "yes" if med <= 200 else "NO"
        if kind in ("image (new)", "ig (first)"):
            target = f"{target} (runs the network)"
        print(f"{kind:<14} {med:10.1f} {quantile(vals, .25):7.1f}-{quantile(vals, .75):<8.1f} {max(vals):9.1f}  {target}")
    print(f"backbone runs during the timed changes: {explorer.backbone_runs - runs_before} "
          f"(one per model for each new image)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "times_ms": times}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
