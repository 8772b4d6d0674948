"""Adversarial robustness: accuracy of any CAM model under FGSM and PGD attacks (Captum's ``captum.robust``).

Threat model (white box, untargeted, evasion): the attacker knows the model and its weights and may change
each test image ``x`` (pixel values in ``[lo, hi]``, by default ``[0, 1]``) into ``x'`` with
``||x' - x||_p <= epsilon`` (``p = inf`` or ``2``) and ``lo <= x' <= hi``, to make the prediction differ from
the label ``y``. The attacks maximise the cross-entropy ``L(x) = CE(f(x), y)`` of the model's logits:

* **FGSM** (Goodfellow et al., 2015), one step::

      x' = clamp(x + epsilon * sign(grad_x L(x)), lo, hi)

  (Captum leaves an element unchanged where ``|grad| <= 1e-6``.)
* **PGD** (Madry et al., 2018), ``steps`` sign steps of ``step_size``, each followed by a projection onto the
  ``epsilon`` ball around ``x`` (``norm="Linf"``: clamp each element to ``[x - eps, x + eps]``; ``norm="L2"``:
  rescale ``x' - x`` to L2 norm at most ``eps``, per image) and onto ``[lo, hi]``. Captum's PGD takes a
  *sign* step for both norms; only the projection differs. ``random_start`` starts from a uniform point in
  the ball (for L2 through a small fix of Captum 0.9's random start, which fails on image batches).

Default PGD step: ``2.5 * epsilon / steps`` for Linf (Madry et al.'s rule: enough to cross the ball and
come back); for L2, the sign step moves ``step_size * sqrt(d)`` in L2 norm (``d`` values per image), so the
default is ``2.5 * epsilon / (steps * sqrt(d))``.

Conventions that make ``epsilon`` mean what a reader expects (e.g. ``8/255`` of the pixel range): attack
images in ``[0, 1]`` and put any normalisation inside the model (:class:`Normalized` wraps a model trained on
normalised inputs), so the bounds are ``(0, 1)``. The loss is ``nn.CrossEntropyLoss(reduction="none")`` on
**logits** (Captum's default loss assumes probabilities), one value per image. A CAM model's
``(logits, features)`` output is reduced to its logits with :class:`hncam_utils.models.LogitsOnly`; a model
that already returns a logits tensor is used as it is.

Hygiene: the model runs in eval mode (BatchNorm statistics frozen, dropout off) and its previous mode is
restored; its parameters are frozen during the attack (``requires_grad`` restored afterwards), so no gradient
reaches ``.grad`` and the weights and buffers are left exactly as they were.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._checks import check_bool, check_choice, check_float, check_int, check_module
from .models import LogitsOnly

__all__ = [
    "ATTACKS",
    "Normalized",
    "NORMS",
    "RobustnessCurve",
    "adversarial_examples",
    "accuracy_under_attack",
    "default_step_size",
]

ATTACKS = ("fgsm", "pgd")
NORMS = ("Linf", "L2")
Bounds = Tuple[float, float]


# ----------------------------------------------------------------------------------------------- checks
def _check_epsilon(epsilon: float) -> float:
    try:
        eps = float(epsilon)
    except (TypeError, ValueError):
        raise ValueError(f"epsilon must be a number >= 0 (e.g. 8/255), got {epsilon!r}") from None
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"epsilon must be a finite number >= 0 (e.g. 8/255), got {epsilon!r}")
    return eps


def _check_epsilons(epsilons: Union[float, Sequence[float]]) -> Tuple[float, ...]:
    if isinstance(epsilons, (int, float)) or (isinstance(epsilons, Tensor) and epsilons.dim() == 0):
        epsilons = [float(epsilons)]
    if isinstance(epsilons, (str, bytes)) or not isinstance(epsilons, Iterable):
        raise TypeError(f"epsilons must be a number or a sequence of numbers, e.g. [0, 2/255, 8/255], got {epsilons!r}")
    values = [_check_epsilon(e) for e in epsilons]
    if not values:
        raise ValueError("epsilons is empty; pass at least one strength, e.g. [0, 0.05, 0.1]")
    return tuple(sorted(set(values)))


def _check_attack(attack: str, norm: str, steps: int, step_size: Optional[float], bounds: Bounds) -> Tuple[str, str]:
    name = attack.lower() if isinstance(attack, str) else attack
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; choose one of {ATTACKS}")
    canon = {n.lower(): n for n in NORMS}
    if not isinstance(norm, str) or norm.lower() not in canon:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    norm = canon[norm.lower()]
    if name == "fgsm" and norm != "Linf":
        raise ValueError("FGSM is an Linf attack (a sign step); use attack='pgd' for norm='L2'")
    if name == "pgd" and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 1):
        raise ValueError(f"steps must be an integer >= 1 for PGD, got {steps!r}")
    if step_size is not None:
        if isinstance(step_size, bool) or not isinstance(step_size, (int, float)):
            raise TypeError(f"step_size must be a number > 0 (or None for the default), got {step_size!r}")
        if not (math.isfinite(step_size) and step_size > 0):
            raise ValueError(f"step_size must be a number > 0 (or None for the default), got {step_size!r}")
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair (lower, upper), e.g. (0, 1); got {bounds!r}") from None
    if not lo < hi:
        raise ValueError(f"bounds must satisfy lower < upper, got {bounds!r}")
    return name, norm


def _check_batch(images: Tensor, targets: Tensor, bounds: Bounds) -> None:
    if not isinstance(images, Tensor) or images.dim() < 2:
        raise ValueError(f"images must be a (B, ...) tensor, got {type(images).__name__} "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else ''}")
    if not isinstance(targets, Tensor) or targets.dim() != 1 or targets.dtype.is_floating_point:
        raise ValueError("targets must be a (B,) tensor of class indices; accuracy under attack is defined for "
                         f"single-label data (got {getattr(targets, 'dtype', type(targets))} "
                         f"{tuple(targets.shape) if isinstance(targets, Tensor) else ''})")
    if len(images) != len(targets):
        raise ValueError(f"{len(images)} images but {len(targets)} targets")
    lo, hi = bounds
    if images.numel() and (float(images.min()) < lo - 1e-6 or float(images.max()) > hi + 1e-6):
        raise ValueError(
            f"images lie in [{float(images.min()):.3g}, {float(images.max()):.3g}], outside the bounds [{lo:g}, {hi:g}]: "
            "attack images in [0, 1] and put the normalisation inside the model (or pass the right bounds)"
        )


def default_step_size(epsilon: float, steps: int, norm: str = "Linf", numel: int = 1) -> float:
    """PGD's default step: ``2.5 * epsilon / steps`` (Linf) or ``2.5 * epsilon / (steps * sqrt(numel))`` (L2,
    because Captum's sign step of size ``a`` moves ``a * sqrt(numel)`` in L2 norm on an image of ``numel``
    values).

    Raises:
        ValueError: a negative ``epsilon``, ``steps`` or ``numel`` below 1, a norm other than ``"Linf"`` or
            ``"L2"``. TypeError: ``steps`` or ``numel`` not an int.
    """
    epsilon = _check_epsilon(epsilon)
    steps = check_int("steps", steps, min=1)
    check_choice("norm", norm, NORMS)
    numel = check_int("numel", numel, min=1, fix="the number of values in one image, e.g. x[0].numel()")
    step = 2.5 * epsilon / steps
    return step / math.sqrt(numel) if norm == "L2" else step


# ------------------------------------------------------------------------------------ model handling
class Normalized(nn.Module):
    """``model((x - mean) / std)``: puts a data set's normalisation inside the model, so that attacks act on
    pixels in ``[0, 1]`` with bounds ``(0, 1)`` and ``epsilon`` in pixel units.

    The output is the wrapped model's (a CAM model keeps returning ``(logits, features)``), so CAMs, metrics and
    the attacks of this module work on the wrapper as on the model.

    Args:
        model: a model trained on normalised inputs.
        mean, std: per-channel statistics in ``[0, 1]`` units (a float or one value per channel), as used in
            training (e.g. ``FASHION_MEAN``, ``FASHION_STD``).

    Raises:
        ValueError: a standard deviation that is not positive, or mean and std of different lengths.
        TypeError: a model that is not an ``nn.Module``; mean or std that are not numbers.
    """

    def __init__(self, model: nn.Module, mean: Union[float, Sequence[float]], std: Union[float, Sequence[float]]) -> None:
        super().__init__()
        check_module("model", model, fix="the trained model, e.g. digits_cnn()")
        m, s = _per_channel("mean", mean), _per_channel("std", std)
        if m.numel() != s.numel():
            raise ValueError(f"mean and std need one value per channel each, got {m.numel()} and {s.numel()}")
        if not bool(torch.isfinite(m).all()):
            raise ValueError(f"mean must be finite, got {m.tolist()}")
        if not bool((s > 0).all() and torch.isfinite(s).all()):
            raise ValueError(f"std must be > 0 and finite, got {s.tolist()}")
        self.model = model
        self.register_buffer("mean", m[None, :, None, None], persistent=False)
        self.register_buffer("std", s[None, :, None, None], persistent=False)

    @property
    def classifier(self) -> nn.Module:
        """The wrapped model's linear head (for CAMs)."""
        return self.model.classifier

    def forward(self, x: Tensor):
        return self.model((x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype))



def _per_channel(name: str, value: Any) -> Tensor:
    try:
        return torch.as_tensor(value, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a number or one number per channel, e.g. FASHION_MEAN, got {value!r}") from None


@contextlib.contextmanager
def _attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters inside, the previous mode and ``requires_grad`` flags restored after."""
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(was_training)


def _device_of(model: nn.Module, device: Optional[Union[str, torch.device]]) -> torch.device:
    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError, ValueError):
            raise ValueError(f"device must be a device name such as 'cpu' or 'cuda' (the model's device), got "
                             f"{device!r}") from None
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _logits_model(model: nn.Module, probe: Tensor) -> Tuple[nn.Module, int]:
    """``(LogitsOnly(model), C)`` for a CAM model, ``(model, C)`` when it already returns a logits tensor."""
    with torch.no_grad():
        out = model(probe[:1])
    if isinstance(out, Tensor):
        net = model
    elif hasattr(out, "logits"):
        net = LogitsOnly(model)
        out = out.logits
    else:
        raise TypeError(f"model must return logits (B, C) or a CAM output with .logits, got {type(out).__name__}")
    if out.dim() != 2:
        raise ValueError(f"model's logits must be (B, C), got shape {tuple(out.shape)}")
    return net, int(out.shape[1])


def _check_targets(y: Tensor, num_classes: int) -> None:
    """Class indices the model has an output for (read on the host once per batch, like the bounds check)."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"targets must be class indices in [0, {num_classes - 1}] for the model's {num_classes} "
                         f"outputs, got values in [{int(y.min())}, {int(y.max())}]; check the labels and the model")


def _pgd_class():
    """Captum's PGD with a working L2 random start.

    Captum 0.9's ``PGD._random_point`` for ``norm="L2"`` draws the radii with ``torch.rand(batch)`` (always on
    the CPU) and never reshapes them to broadcast over the image dimensions, so a batch of images fails with a
    size mismatch. This subclass draws a uniform point in the L2 ball correctly (direction uniform on the
    sphere, radius ``eps * U^(1/d)``, on the images' device); Linf is left to Captum.
    """
    from captum.robust import PGD

    class _PGD(PGD):
        def _random_point(self, center, radius, norm, mask):  # type: ignore[override]
            if norm != "L2":
                return super()._random_point(center, radius, norm, mask)
            u = torch.randn_like(center)
            unit = u / u.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (u.dim() - 1)))
            d = center[0].numel()
            r = torch.rand(len(center), device=center.device, dtype=center.dtype) ** (1.0 / d) * radius
            return center + r.view(-1, *([1] * (u.dim() - 1))) * unit * mask

    return _PGD


def _seeded(seed: Optional[int], device: torch.device):
    if seed is None:
        return contextlib.nullcontext()
    devices = [device] if device.type == "cuda" else []
    ctx = torch.random.fork_rng(devices=devices)

    @contextlib.contextmanager
    def _cm():
        with ctx:
            torch.manual_seed(seed)
            yield

    return _cm()


@dataclass(frozen=True)
class _Attack:
    """One attack's checked settings, and the per-batch steps that :func:`adversarial_examples` and
    :func:`accuracy_under_attack` share (check and move a batch, run Captum's FGSM or PGD on it)."""

    attack: str
    norm: str
    steps: int
    step_size: Optional[float]
    random_start: bool
    bounds: Bounds

    @classmethod
    def checked(cls, attack: str, norm: str, steps: int, step_size: Optional[float], random_start: bool,
                bounds: Bounds) -> "_Attack":
        name, norm = _check_attack(attack, norm, steps, step_size, bounds)
        random_start = check_bool("random_start", random_start, fix="pass True for a uniform start in the ball")
        lo, hi = (float(b) for b in bounds)
        return cls(name, norm, steps, None if step_size is None else float(step_size), random_start, (lo, hi))

    def batch(self, images: Tensor, targets: Tensor, device: torch.device) -> Tuple[Tensor, Tensor]:
        """The checked batch as float images and targets on ``device``."""
        _check_batch(images, targets, self.bounds)
        return images.to(device).float(), targets.to(device)

    def perturb(self, net: nn.Module, x: Tensor, y: Tensor, eps: float, seed: Optional[int]) -> Tensor:
        """Adversarial ``x`` for a logits model ``net`` (in attack mode); ``seed`` seeds PGD's random start."""
        from captum.robust import FGSM

        lo, hi = self.bounds
        loss = nn.CrossEntropyLoss(reduction="none")
        with warnings.catch_warnings(), _seeded(seed, x.device):
            # Captum warns each step that it switched on requires_grad for the (detached) images: expected here
            warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
            if self.attack == "fgsm":
                return FGSM(net, loss_func=loss, lower_bound=lo, upper_bound=hi).perturb(x, epsilon=eps, target=y).detach()
            step = self.step_size if self.step_size is not None else default_step_size(eps, self.steps, self.norm,
                                                                                     x[0].numel())
            pgd = _pgd_class()(net, loss_func=loss, lower_bound=lo, upper_bound=hi)
            return pgd.perturb(x, radius=eps, step_size=step, step_num=self.steps, target=y,
                               random_start=self.random_start, norm=self.norm).detach()


# ------------------------------------------------------------------------------------------ public API
def adversarial_examples(
    model: nn.Module,
    images: Tensor,
    targets: Tensor,
    epsilon: float,
    attack: str = "fgsm",
    norm: str = "Linf",
    *,
    steps: int = 10,
    step_size: Optional[float] = None,
    random_start: bool = False,
    bounds: Bounds = (0.0, 1.0),
    seed: Optional[int] = None,
) -> Tensor:
    """Adversarial versions of ``images`` (on the model's device): one call of Captum's FGSM or PGD.

    FGSM: ``x' = clamp(x + epsilon * sign(grad_x CE(f(x), y)), lo, hi)``; PGD: ``steps`` such sign steps of
    ``step_size`` (default :func:`default_step_size`), each projected onto ``||x' - x||_norm <= epsilon`` and
    ``[lo, hi]`` (see the module docstring).

    Args:
        model: a CAM model (forward returns ``(logits, features)``) or any model returning logits ``(B, C)``;
            its normalisation, if any, must be inside it.
        images: ``(B, ...)`` images with values in ``bounds``.
        targets: ``(B,)`` true class indices (the attack pushes the prediction away from them).
        epsilon: the radius of the allowed perturbation, in pixel units (``8/255`` = 8 grey levels).
        attack: ``"fgsm"`` or ``"pgd"``.
        norm: ``"Linf"`` or ``"L2"`` (PGD only).
        steps, step_size, random_start: PGD settings (``random_start`` draws a uniform start in the ball).
        bounds: ``(lo, hi)``, the valid pixel range.
        seed: seeds PGD's random start without touching the global random state.

    Returns:
        A detached tensor like ``images``.

    Raises:
        ValueError: a negative or non-finite ``epsilon``, an unknown attack or norm, FGSM with ``norm="L2"``,
            ``steps < 1``, ``step_size <= 0``, bad ``bounds``, images outside the bounds, targets that are not
            ``(B,)`` class indices.
        TypeError: a model that is not an ``nn.Module`` or returns neither a tensor nor an output with
            ``.logits``; a ``step_size``, ``random_start`` or ``seed`` of the wrong type.
    """
    eps = _check_epsilon(epsilon)
    spec = _Attack.checked(attack, norm, steps, step_size, random_start, bounds)
    check_module("model", model)
    seed = check_int("seed", seed, none_ok=True, fix="pass an int (or None for the global random state)")
    x, y = spec.batch(images, targets, _device_of(model, None))
    with _attack_mode(model):
        net, num_classes = _logits_model(model, x)
        _check_targets(y, num_classes)
        return spec.perturb(net, x, y, eps, seed)


@dataclass(frozen=True)
class RobustnessCurve:
    """Accuracy under one attack at several strengths, from :func:`accuracy_under_attack`.

    Attributes:
        epsilons: the strengths, increasing.
        accuracy: top-1 accuracy in % on the attacked images, one per epsilon.
        n_images: how many images were attacked.
        attack, norm, steps, step_size, random_start: the attack's settings (``step_size=None``: the default
            rule of :func:`default_step_size`; ``steps`` is 1 for FGSM).
        correct: ``(len(epsilons), n_images)`` bool, which images were still classified correctly.
    """

    epsilons: Tuple[float, ...]
    accuracy: Tuple[float, ...]
    n_images: int
    attack: str
    norm: str
    steps: int
    step_size: Optional[float]
    random_start: bool = False
    correct: Optional[Tensor] = field(default=None, repr=False, compare=False)

    def accuracy_at(self, epsilon: float) -> float:
        """The accuracy (%) at one of the measured ``epsilons``.

        Raises:
            ValueError: ``epsilon`` was not measured. TypeError: not a number.
        """
        epsilon = check_float("epsilon", epsilon, finite=False)
        for e, a in zip(self.epsilons, self.accuracy):
            if math.isclose(e, epsilon, rel_tol=1e-9, abs_tol=1e-12):
                return a
        raise ValueError(f"epsilon {epsilon!r} was not measured; measured: {list(self.epsilons)}")

    def epsilon_at(self, level: float) -> float:
        """The smallest strength at which the accuracy falls to ``level`` % or below (e.g. chance,
        ``100 / num_classes``), linearly interpolated between the two measured epsilons around the crossing.

        Returns the first epsilon when the accuracy is already at or below ``level`` there, and ``nan`` when
        it never falls that low on the measured grid (a larger epsilon is needed).

        Raises:
            TypeError: ``level`` not a number. ValueError: ``level`` outside [0, 100].
        """
        level = check_float("level", level, min=0, max=100, fix="an accuracy in %, e.g. 100 / num_classes (chance)")
        eps, acc = self.epsilons, self.accuracy
        if acc[0] <= level:
            return eps[0]
        for i in range(1, len(eps)):
            if acc[i] <= level:
                a0, a1 = acc[i - 1], acc[i]
                t = (a0 - level) / (a0 - a1) if a0 != a1 else 1.0
                return eps[i - 1] + t * (eps[i] - eps[i - 1])
        return math.nan

    def describe(self) -> str:
        """The attack in words, e.g. ``PGD-Linf, 10 steps of 2.5*eps/steps, 500 images``."""
        if self.attack == "fgsm":
            how = "FGSM (one Linf sign step)"
        else:
            step = f"{self.step_size:g}" if self.step_size is not None else (
                "2.5*eps/steps" if self.norm == "Linf" else "2.5*eps/(steps*sqrt(d))")
            how = f"PGD-{self.norm}, {self.steps} steps of {step}" + (", random start" if self.random_start else "")
        return f"{how}, {self.n_images} images"

    def as_dict(self) -> Dict[str, object]:
        """Plain data (for JSON), without the per-image ``correct`` table."""
        return {"epsilons": list(self.epsilons), "accuracy": list(self.accuracy), "n_images": self.n_images,
                "attack": self.attack, "norm": self.norm, "steps": self.steps, "step_size": self.step_size,
                "random_start": self.random_start}


def accuracy_under_attack(
    model: nn.Module,
    loader: Iterable,
    epsilons: Union[float, Sequence[float]],
    attack: str = "fgsm",
    norm: str = "Linf",
    *,
    steps: int = 10,
    step_size: Optional[float] = None,
    random_start: bool = False,
    bounds: Bounds = (0.0, 1.0),
    device: Optional[Union[str, torch.device]] = None,
    seed: Optional[int] = 0,
    progress: bool = True,
) -> RobustnessCurve:
    """Top-1 accuracy of ``model`` on the images of ``loader`` after an attack of each strength in ``epsilons``.

    Every batch is attacked at every epsilon (epsilon 0 runs the attack too, and must give the clean
    accuracy: a built-in check). The attack is Captum's :class:`~captum.robust.FGSM` or
    :class:`~captum.robust.PGD` on ``nn.CrossEntropyLoss(reduction="none")`` of the logits; see
    :func:`adversarial_examples` and the module docstring for the formulas, the threat model and the default
    step size.

    Args:
        model: a CAM model from :mod:`hncam_utils.models` (or any model returning logits), normalisation inside.
        loader: yields ``(images, targets)`` or ``(images, targets, boxes)``, images in ``bounds``, targets
            class indices. Attack a :class:`torch.utils.data.Subset` to bound the cost.
        epsilons: one strength or several (sorted, duplicates dropped); ``0`` is the clean accuracy.
        attack: ``"fgsm"`` or ``"pgd"``; norm ``"Linf"`` or ``"L2"`` (PGD only).
        steps, step_size, random_start: PGD settings.
        bounds: the valid pixel range ``(lo, hi)``.
        device: where to attack (default: the model's device; the model must already be there).
        seed: seeds PGD's random start (per batch, reproducibly) without touching the global random state;
            ``None`` leaves the global generator in charge.
        progress: a ``tqdm.auto`` progress bar over the batches.

    Returns:
        A :class:`RobustnessCurve` (accuracy in % per epsilon, and which images stayed correct).

    Raises:
        ValueError: an empty or negative/non-finite ``epsilons``, an unknown attack or norm, FGSM with L2,
            ``steps < 1``, ``step_size <= 0``, bad bounds, images outside the bounds, non-index targets, or a
            loader that yields no images.
        TypeError: a model that is not an ``nn.Module``; a ``step_size``, ``random_start``, ``seed`` or
            ``progress`` of the wrong type.
    """
    eps_list = _check_epsilons(epsilons)
    spec = _Attack.checked(attack, norm, steps, step_size, random_start, bounds)
    check_module("model", model)
    seed = check_int("seed", seed, none_ok=True, fix="pass an int (or None for the global random state)")
    check_bool("progress", progress)
    dev = _device_of(model, device)
    batches: Iterable = loader
    if progress:
        from tqdm.auto import tqdm

        total = len(loader) if hasattr(loader, "__len__") else None
        batches = tqdm(loader, total=total, desc=f"{spec.attack.upper()}-{spec.norm} x {len(eps_list)} eps",
                       leave=False)
    correct: List[List[Tensor]] = [[] for _ in eps_list]
    net: Optional[nn.Module] = None
    num_classes = 0
    n = 0
    with _attack_mode(model):
        for b, batch in enumerate(batches):
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError("the loader must yield (images, targets) or (images, targets, boxes) batches")
            x, y = spec.batch(batch[0], batch[1], dev)
            if len(y) == 0:
                continue
            if net is None:
                net, num_classes = _logits_model(model, x)
            _check_targets(y, num_classes)
            for e, eps in enumerate(eps_list):
                batch_seed = None if seed is None or not spec.random_start else seed * 1_000_003 + b
                adv = spec.perturb(net, x, y, eps, batch_seed)
                with torch.no_grad():
                    pred = net(adv).argmax(dim=1)
                correct[e].append((pred == y).cpu())
            n += len(y)
    if n == 0:
        raise ValueError("the loader yielded no images; check the data set (is it empty?) and the loader")
    table = torch.stack([torch.cat(c) for c in correct])
    accuracy = tuple(100.0 * float(row.float().mean()) for row in table)
    pgd = spec.attack == "pgd"
    return RobustnessCurve(eps_list, accuracy, n, spec.attack, spec.norm, spec.steps if pgd else 1, spec.step_size,
                           spec.random_start and pgd, table)
