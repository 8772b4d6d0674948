"""Exercises of the course: a check for the learner's answer, and the solution on demand.

A notebook gives a stub to fill in, then a check cell::

    def select(cams, targets, k):
        raise NotImplementedError        # your code here

    check("select", select)             # tests your function against the package
    show_solution("select")             # only when stuck: prints a solution

:func:`check` compares the learner's function with the package (:mod:`hncam_utils.losses`,
:mod:`hncam_utils.base_losses`) on fixed and random inputs, or, for random label noise, checks the properties
the package's noise has (realised rate, never the true class, uniform over the others, seeded). A stub that still raises ``NotImplementedError`` gets a friendly note (so the notebook still runs top to
bottom); a wrong answer raises ``AssertionError`` saying on which input it differs and how.

Depends on torch and the maths layer only (:mod:`hncam_utils.losses`, :mod:`hncam_utils.base_losses`).
"""

from __future__ import annotations

import inspect
from typing import Callable, Dict, Iterator, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .base_losses import focal_loss
from .losses import HNCLoss, positive_mask, select_negatives

__all__ = ["EXERCISES", "check", "show_solution", "solution"]


# ----------------------------------------------------------------------------------------------- solutions
def select_solution(cams: Tensor, targets: Tensor, k: int) -> Tensor:
    """Indices ``(B, k)`` of the ``k`` highest-scoring classes other than the label, highest first.

    The score of a class is the sum of its CAM (= H*W times its logit on a GAP network).
    """
    scores = cams.sum(dim=(2, 3))
    scores = scores.masked_fill(F.one_hot(targets, cams.shape[1]).bool(), float("-inf"))
    return scores.topk(k, dim=1).indices


def hnc_mse_solution(cams: Tensor, targets: Tensor, k: int) -> Tensor:
    """HNC_mse: the mean of ``M**2`` over every pixel of the ``k`` selected negative CAMs of every image."""
    idx = select_solution(cams, targets, k)
    selected = cams.gather(1, idx[:, :, None, None].expand(-1, -1, *cams.shape[2:]))  # (B, k, H, W)
    return selected.pow(2).mean()


def hnc_kd_solution(cams: Tensor, targets: Tensor, k: int, T: float = 1.0) -> Tensor:
    """HNC_kd: per selected map, the cross-entropy between the uniform distribution over pixels and the
    spatial softmax of ``M / T``; summed over the selected maps and divided by the batch size."""
    idx = select_solution(cams, targets, k)
    selected = cams.gather(1, idx[:, :, None, None].expand(-1, -1, *cams.shape[2:])).flatten(2)  # (B, k, HW)
    log_p = torch.log_softmax(selected / T, dim=2)
    return (-log_p.mean(dim=2)).sum() / cams.shape[0]


def focal_solution(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """Focal loss: the mean over the batch of ``-(1 - p_y)**gamma * log p_y``."""
    log_p = torch.log_softmax(logits, dim=1).gather(1, targets[:, None])[:, 0]
    return (-(1 - log_p.exp()).pow(gamma) * log_p).mean()


def symmetric_noise_solution(labels: Tensor, rate: float, num_classes: int, generator: torch.Generator) -> Tensor:
    """Symmetric label noise: with probability ``rate`` a label becomes one of the *other* classes, uniformly.

    Adding an offset drawn from ``1 .. C-1`` (modulo ``C``) never gives back the true class.
    """
    flip = torch.rand(labels.shape, generator=generator) < rate
    offset = torch.randint(1, num_classes, labels.shape, generator=generator)
    return torch.where(flip, (labels + offset) % num_classes, labels)


# ----------------------------------------------------------------------------------------------- test cases
def _cases(seed: int = 0, n_random: int = 12) -> Iterator[Tuple[Tensor, Tensor, int]]:
    """``(cams, targets, k)``: a small fixed case, then random ones of varying shapes and k."""
    gen = torch.Generator().manual_seed(seed)
    yield 2.0 * torch.randn(2, 5, 4, 4, generator=gen), torch.tensor([0, 3]), 2
    for _ in range(n_random):
        b = int(torch.randint(1, 6, (1,), generator=gen))
        c = int(torch.randint(3, 12, (1,), generator=gen))
        h, w = (int(v) for v in torch.randint(2, 8, (2,), generator=gen))
        k = int(torch.randint(1, c, (1,), generator=gen))
        cams = 3.0 * torch.randn(b, c, h, w, generator=gen, dtype=torch.float64)
        yield cams, torch.randint(0, c, (b,), generator=gen), k


def _expected_select(cams: Tensor, targets: Tensor, k: int) -> Tensor:
    return select_negatives(cams.sum(dim=(2, 3)), positive_mask(targets, cams.shape[1]), k)[0]


def _check_select(fn: Callable) -> str:
    for i, (cams, targets, k) in enumerate(_cases()):
        got = fn(cams.clone(), targets.clone(), k)
        want = _expected_select(cams, targets, k)
        if not isinstance(got, Tensor) or tuple(got.shape) != tuple(want.shape):
            raise AssertionError(f"case {i}: expected a tensor of shape {tuple(want.shape)} (B, k), got "
                                 f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}")
        if not torch.equal(got.long(), want):
            raise AssertionError(f"case {i} (k = {k}, labels {targets.tolist()}): expected indices {want.tolist()}, "
                                 f"got {got.tolist()}. Rank by the CAM sum, never pick the label, highest first.")
    return "select: correct (same classes, same order as hncam_utils.losses.select_negatives on 13 cases)"


def _check_loss(fn: Callable, variant: str, temperatures: Tuple[float, ...]) -> str:
    for i, (cams, targets, k) in enumerate(_cases(seed=1)):
        for T in temperatures:
            got = fn(cams.clone(), targets.clone(), k) if variant == "mse" else fn(cams.clone(), targets.clone(), k, T)
            want = HNCLoss(k=k, variant=variant, temperature=T)(cams, targets)
            if not isinstance(got, Tensor) or got.dim() != 0:
                raise AssertionError(f"case {i}: expected a scalar tensor (0-dim), got "
                                     f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}")
            if not torch.allclose(got.double(), want.double(), rtol=1e-5, atol=1e-6):
                hint = ("average M**2 over every selected pixel (divide by |S| * H * W)" if variant == "mse"
                        else "per map -mean(log softmax(M / T)) over its pixels; sum over maps, divide by B (not by k)")
                where = f"k = {k}" + (f", T = {T}" if variant == "kd" else "")
                raise AssertionError(f"case {i} ({where}): expected {float(want):.6f}, got {float(got):.6f}. Hint: {hint}")
    n = 13 * len(temperatures)
    return f"hnc_{variant}: correct (equals HNCLoss(variant={variant!r}) on {n} cases)"


def _check_focal(fn: Callable) -> str:
    gen = torch.Generator().manual_seed(2)
    n = 0
    for gamma in (0.0, 0.5, 2.0, 5.0):
        for b, c in ((1, 3), (4, 10), (16, 7)):
            logits = 4.0 * torch.randn(b, c, generator=gen, dtype=torch.float64)
            targets = torch.randint(0, c, (b,), generator=gen)
            got = fn(logits.clone(), targets.clone(), gamma)
            want = focal_loss(logits, targets, gamma=gamma)
            n += 1
            if not isinstance(got, Tensor) or got.dim() != 0:
                raise AssertionError(f"gamma = {gamma}: expected a scalar tensor (0-dim), got "
                                     f"{tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__}")
            if not torch.allclose(got.double(), want, rtol=1e-5, atol=1e-7):
                hint = ("at gamma = 0 it must equal F.cross_entropy" if gamma == 0 else
                        "weight each example's -log p_y by (1 - p_y)**gamma, p_y the softmax probability of its "
                        "label, then average over the batch")
                raise AssertionError(f"gamma = {gamma}, batch {b}, {c} classes: expected {float(want):.6f}, got "
                                     f"{float(got):.6f}. Hint: {hint}")
    return f"focal: correct (equals hncam_utils.base_losses.focal_loss on {n} cases)"


def _check_symmetric_noise(fn: Callable) -> str:
    c, n = 10, 20_000
    labels = torch.arange(n) % c
    for rate in (0.0, 0.2, 0.4):
        noisy = fn(labels.clone(), rate, c, torch.Generator().manual_seed(0))
        if not isinstance(noisy, Tensor) or noisy.shape != labels.shape:
            raise AssertionError(f"rate {rate}: expected a tensor of shape {tuple(labels.shape)}, got "
                                 f"{tuple(noisy.shape) if isinstance(noisy, Tensor) else type(noisy).__name__}")
        noisy = noisy.long()
        if bool(((noisy < 0) | (noisy >= c)).any()):
            raise AssertionError(f"rate {rate}: labels outside [0, {c - 1}]")
        changed = noisy != labels
        realised = float(changed.float().mean())
        if abs(realised - rate) > 0.015:
            raise AssertionError(f"rate {rate}: {realised:.3f} of the labels changed. Hint: each label changes with "
                                 "probability rate, and a changed label must never be the true class again "
                                 "(draw among the C - 1 other classes)")
        if rate > 0:
            offsets = ((noisy[changed] - labels[changed]) % c).bincount(minlength=c)[1:].float()
            share = offsets / offsets.sum()
            if float((share - 1 / (c - 1)).abs().max()) > 0.03:
                raise AssertionError(f"rate {rate}: the wrong labels are not spread evenly over the other classes "
                                     f"(shares by offset {[round(float(v), 3) for v in share]}, expected about "
                                     f"{1 / (c - 1):.3f} each)")
    again = fn(labels.clone(), 0.4, c, torch.Generator().manual_seed(0)).long()
    other = fn(labels.clone(), 0.4, c, torch.Generator().manual_seed(1)).long()
    if not torch.equal(again, fn(labels.clone(), 0.4, c, torch.Generator().manual_seed(0)).long()):
        raise AssertionError("the same generator seed gave other labels: draw every random number from `generator`")
    if torch.equal(again, other):
        raise AssertionError("two generator seeds gave the same labels: draw the random numbers from `generator`")
    return ("symmetric_noise: correct (realised rates 0, 0.2, 0.4 within 1.5 points, never the true class, "
            "uniform over the other classes, reproducible per seed)")


#: name -> (checker, solution)
EXERCISES: Dict[str, Tuple[Callable[[Callable], str], Callable]] = {
    "select": (_check_select, select_solution),
    "hnc_mse": (lambda fn: _check_loss(fn, "mse", (1.0,)), hnc_mse_solution),
    "hnc_kd": (lambda fn: _check_loss(fn, "kd", (1.0, 0.5, 2.0, 4.0)), hnc_kd_solution),
    "focal": (_check_focal, focal_solution),
    "symmetric_noise": (_check_symmetric_noise, symmetric_noise_solution),
}


def _entry(name: str) -> Tuple[Callable[[Callable], str], Callable]:
    if name not in EXERCISES:
        raise KeyError(f"no exercise named {name!r}; the exercises are {sorted(EXERCISES)}")
    return EXERCISES[name]


def check(name: str, fn: Callable) -> bool:
    """Test the learner's function for exercise ``name`` against the package and print the result.

    Returns:
        ``True`` when it matches on every case; ``False`` (with a note) when it still raises
        ``NotImplementedError``.

    Raises:
        AssertionError: the function gives a wrong answer; the message names the case and the difference.
        KeyError: an unknown exercise name.
    """
    checker, _ = _entry(name)
    try:
        message = checker(fn)
    except NotImplementedError:
        print(f"{name}: not done yet. Fill in the function above and run both cells again "
              f"(stuck? run show_solution({name!r})).")
        return False
    print(message)
    return True


def solution(name: str) -> Callable:
    """The solution function of exercise ``name`` (to compare with, or to use in the rest of a notebook)."""
    return _entry(name)[1]


def show_solution(name: str) -> None:
    """Print the source of a solution of exercise ``name``."""
    print(inspect.getsource(solution(name)))
