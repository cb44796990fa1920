"""Adversarial training: PGD adversarial training and TRADES, examples crafted on the fly in every step.

* ``pgd-at`` — Madry, Makelov, Schmidt, Tsipras & Vladu, ICLR 2018, eq. (2.1):
  min_θ mean_b max_{‖δ_b‖∞ ≤ ε} CE(f(x_b + δ_b), y_b). The inner maximum is ``steps`` (7) L∞ PGD
  steps of α = 2.5·ε/steps on the CE from a uniform random start in the ball (the attack of
  :mod:`robench.attacks.pgd`); the update minimises the CE at the crafted points alone.
* ``trades`` — Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, ICML 2019, eq. (5):
  CE(f(x), y) + β · mean_b KL(p(x_b) ‖ p(x'_b)), p = softmax of the logits, x' from ``steps`` (10)
  sign steps of α = 2.5·ε/steps ascending that KL from x + 0.001·N(0, 1) (the paper's start),
  β = 6 (the paper's CIFAR-10 value). The paper's code steps 0.007 for ε = 0.031 with 10 steps,
  i.e. 2.26·ε/steps; we use robench's one rule, 2.5·ε/steps, for every PGD (the attack,
  ``pgd-at``, ``trades``): a step 11 % larger, both crossing the ball (2ε) within the steps.

**ε.** ``eps`` is the L∞ radius, absolute, or with ``eps_mode = "relative"`` the paper's relative
ε: ‖δ_b‖∞ ≤ ε·‖x_b‖∞ (as ``robench attack --eps-mode relative``). A run that gives no ``eps`` gets
its dataset's default, :func:`default_eps` (:data:`DEFAULT_EPS`), resolved where the loss is
built (:meth:`robench.training.config.TrainConfig.resolved_loss_hyper`) and recorded as the run's
``loss_hyper``; the constructor's 0.1 is only for a loss built without a dataset.

**Modes.** The examples are crafted with the model in eval mode, the update is taken in the mode
the caller set (the training loop: train mode), and every submodule's mode is restored after
crafting. Eval mode while crafting keeps the adversarial passes out of BatchNorm's running
statistics (a pgd-at step would otherwise fold 7 extra batches into them) and switches dropout
off, so each step ascends one deterministic function rather than a new random net per step. The
update then uses batch statistics and dropout as any training step does; its forward passes
(``pgd-at``: x'; ``trades``: x, then x') update the running statistics as usual.

**Gradients while crafting** are taken with respect to the input only (``torch.autograd.grad``);
parameters' ``.grad`` is never touched. Crafting runs on the plain module: a
DistributedDataParallel (or DataParallel) wrapper is unwrapped (``.module``), so crafting passes
neither expect nor trigger DDP's gradient all-reduce; only the update goes through the wrapper.
Each process crafts its own rows (eval-mode examples of different rows are independent), and the
loss is a per-row mean (``whole_batch = False``).

**Randomness.** The starts draw from torch's global generator, which the training loop reseeds
every epoch, so runs and resumed runs stay reproducible.

**Shared with the attacks.** The ball (:func:`robench.norms.project`, ``random_start``) comes from
the floor module both stages use; losses sit below attacks (``tests/test_layout.py``), so the few
lines of the sign-gradient loop (:func:`sign_ascent`) follow ``attacks.pgd.sign_gradient_ascent``
here, and a test checks that ``pgd-at``'s examples equal robench's PGD's bit for bit from the same
seed.

``train_accuracy`` of a ``pgd-at`` run is measured on the crafted examples (``objective`` returns
their logits); that of a ``trades`` run on the clean ones. Shapes: x (B, C, H, W) in [0, 1], y (B,).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from robench.checks import is_number
from robench.errors import RobenchError
from robench.losses.base import LatentLoss, register_loss
from robench.norms import project, random_start, steepest_ascent

DEFAULT_EPS = {"mnist": 0.3, "fashion-mnist": 0.1, "svhn": 8 / 255, "cifar10": 8 / 255, "cifar100": 8 / 255,
               "digits": 0.1, "synthetic": 0.1}
"""Default L∞ ε per dataset: Madry et al.'s 0.3 (MNIST) and 8/255 (CIFAR-10, also the usual SVHN and
CIFAR-100 value), the common 0.1 for Fashion-MNIST. For the 8×8 ``digits`` 0.1 (1.6 of its 16 grey
levels): measured with small-cnn, 5 epochs at lr 0.05, PGD-10, a ce run keeps 60 % of the test set at
0.1 and 1 % at 0.2, pgd-at 78 % at 0.1 with 96 % clean accuracy, but only 33 % at 0.2 with 89 % clean.
``synthetic`` (test data) takes 0.1 too."""
FALLBACK_EPS = 0.1
"""The constructors' ε: a loss built without a dataset (``build_loss("pgd-at", 10)``)."""
EPS_MODES = ("absolute", "relative")
MAX_STEPS = 1000
TRADES_START_STD = 0.001  # Zhang et al.'s start: x + 0.001·N(0, 1)


def default_eps(dataset: str) -> float:
    """The default adversarial-training ε of ``dataset`` (:data:`DEFAULT_EPS`)."""
    try:
        return DEFAULT_EPS[dataset]
    except KeyError:
        raise RobenchError(f"no default adversarial-training eps for dataset {dataset!r}; give one "
                           f"(--at-eps, or loss_hyper eps in a recipe)") from None


def plain_module(model: nn.Module) -> nn.Module:
    """``model`` without a DistributedDataParallel / DataParallel wrapper."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    return model.module if isinstance(model, wrappers) else model


@contextlib.contextmanager
def crafting_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The plain module in eval mode with gradients enabled; every submodule's mode is restored after."""
    module = plain_module(model)
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.enable_grad():
            yield module
    finally:
        for m, training in modes:
            m.training = training


def sign_ascent(objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, start: torch.Tensor,
                radius: torch.Tensor, alpha: torch.Tensor, steps: int) -> torch.Tensor:
    """``steps`` L∞ steps x ← Π(x + α·sign ∇ₓ objective(x)) from ``start``; the gradient is the input's only."""
    x_adv = start
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(x_adv), x_adv)
        x_adv = project(x_adv.detach() + alpha * steepest_ascent(grad, "Linf"), x, radius, "Linf")
    return x_adv.detach()


def trades_kl(z: torch.Tensor, z_adv: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per row, p = softmax(z), q = softmax(z_adv): Σ_j p_j (log p_j − log q_j), shape (B,)."""
    log_p, log_q = F.log_softmax(z, dim=1), F.log_softmax(z_adv, dim=1)
    return F.kl_div(log_q, log_p, reduction="none", log_target=True).sum(1)


class AdversarialLoss(LatentLoss):
    """CE training on examples crafted in the L∞ ball; ``loss(z, y)`` is the cross-entropy on z."""

    name = ""

    def __init__(self, num_classes: int, eps: float, steps: int, eps_mode: str):
        super().__init__()
        if not (is_number(eps) and 0 <= eps <= 1):
            raise RobenchError(f"{self.name} eps must be a number in [0, 1] (images are in [0, 1]), got {eps}")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
            raise RobenchError(f"{self.name} steps must be a whole number in 1..{MAX_STEPS}, got {steps}")
        if eps_mode not in EPS_MODES:
            raise RobenchError(f"{self.name} eps_mode must be one of: {', '.join(EPS_MODES)}; got {eps_mode!r}")
        self.num_classes = num_classes
        self.eps, self.steps, self.eps_mode = float(eps), steps, eps_mode

    def radius(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image L∞ radius, shape (B, 1, ..., 1): ε, or ε·‖x_b‖∞ when relative."""
        shape = (len(x),) + (1,) * (x.dim() - 1)
        if self.eps_mode == "relative":
            return self.eps * x.detach().flatten(1).abs().amax(1).view(shape)
        return torch.full(shape, self.eps, dtype=x.dtype, device=x.device)

    def step_size(self, radius: torch.Tensor) -> torch.Tensor:
        """α = 2.5·ε/steps per image (Madry et al.'s rule; robench's PGD default)."""
        return 2.5 / self.steps * radius

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(z, y)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, eps={self.eps}, steps={self.steps}, eps_mode={self.eps_mode!r}"


@register_loss("pgd-at", "PGD adversarial training (Madry et al. 2018): CE on L-inf PGD examples (eps per dataset, "
               "7 steps of 2.5*eps/steps, random start)")
class PGDATLoss(AdversarialLoss):
    """Madry et al. (2018): CE(f(x'), y), x' from ``steps`` L∞ PGD steps on the CE from a uniform start."""

    name = "pgd-at"

    def __init__(self, num_classes: int, eps: float = FALLBACK_EPS, steps: int = 7, eps_mode: str = "absolute"):
        super().__init__(num_classes, eps, steps, eps_mode)

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The PGD examples x' (B, C, H, W), crafted on the plain model in eval mode."""
        radius = self.radius(x)
        with crafting_mode(model) as net:
            return sign_ascent(lambda t: F.cross_entropy(net(t), y, reduction="sum"), x, random_start(x, radius, "Linf"),
                               radius, self.step_size(radius), self.steps)

    def objective(self, model, x, y):
        z_adv = model(self.craft(model, x, y))
        return self(z_adv, y), z_adv


@register_loss("trades", "TRADES (Zhang et al. 2019): CE + beta * KL(p(x) || p(x')), x' maximising the KL in the "
               "L-inf ball (10 steps, beta 6)")
class TRADESLoss(AdversarialLoss):
    """Zhang et al. (2019), eq. (5): CE(f(x), y) + β · mean_b KL(p(x_b) ‖ p(x'_b))."""

    name = "trades"

    def __init__(self, num_classes: int, eps: float = FALLBACK_EPS, steps: int = 10, beta: float = 6.0,
                 eps_mode: str = "absolute"):
        super().__init__(num_classes, eps, steps, eps_mode)
        if not (is_number(beta) and beta >= 0):
            raise RobenchError(f"trades beta must be >= 0, got {beta}")
        self.beta = float(beta)

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x' (B, C, H, W) ascending KL(p(x) ‖ p(x')) from x + 0.001·N(0, 1), on the plain model in eval mode."""
        radius = self.radius(x)
        with crafting_mode(model) as net:
            with torch.no_grad():
                z = net(x)
            start = project(x + TRADES_START_STD * torch.randn_like(x), x, radius, "Linf")
            return sign_ascent(lambda t: trades_kl(z, net(t)).sum(), x, start, radius, self.step_size(radius),
                               self.steps)

    def value_at(self, model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor,
                 y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The TRADES objective for given x' (in the caller's mode): (CE + β·mean KL, clean logits z)."""
        z = model(x)
        z_adv = model(x_adv)
        return self(z, y) + self.beta * trades_kl(z, z_adv).mean(), z

    def objective(self, model, x, y):
        return self.value_at(model, x, self.craft(model, x, y), y)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}"
