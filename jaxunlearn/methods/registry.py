"""Every method of the library, by name, built from the model it unlearns: the one registry.

A method belongs to a *family*, the kind of model it works on, and is built
from that family's problem description:

* ``"classifier"`` (:class:`ClassifierProblem`): SSD, LFSSD, JiT, influence, the
  seven iterative baselines, random labels, SalUn, ℓ1-sparse, UNSIR and Boundary
  Shrink / Expanding, on any classifier given as pure functions;
* ``"vi"`` (:class:`BayesProblem` with a stochastic energy): VI forgetting;
* ``"mcmc"`` (:class:`BayesProblem` with a point-weight energy): MCMC forgetting with
  SGLD or SGHMC, and the importance-sampling baseline;
* ``"cvae"`` (:class:`CVAEProblem`): Selective Amnesia.

``build(name, problem, **settings)`` returns the configured
:class:`~jaxunlearn.methods.base.Unlearner`; ``settings`` override the
method's own defaults (the experiments pass the settings tuned for their
data). ``tests/methods/test_contract.py`` runs its battery over every entry, so
a method added here is checked against the contract without a new test.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

from jaxunlearn import methods
from jaxunlearn.methods.base import Unlearner

__all__ = ["BayesProblem", "CVAEProblem", "ClassifierProblem", "MethodEntry", "REGISTRY", "build", "names"]


class ClassifierProblem(NamedTuple):
    """A trained classifier as pure functions.

    ``loss_fn(params, (x, y)) -> mean cross-entropy`` and ``logits_fn(params, x) -> [B, C]``
    (both eval mode); ``init_fn(key) -> params`` (a fresh initialisation);
    ``num_classes``; ``train_apply(params, x, key) -> logits`` in train mode (dropout keyed),
    or ``None`` to run JiT in eval mode.
    """

    loss_fn: Callable
    logits_fn: Callable
    init_fn: Callable
    num_classes: int
    train_apply: Callable | None = None


class BayesProblem(NamedTuple):
    """A Bayesian model: ``energy`` (:class:`jaxunlearn.bayes.Energy`) and the sampler's base step size ``lr``."""

    energy: Any
    lr: float = 1e-3


class CVAEProblem(NamedTuple):
    """A conditional VAE: ``module`` (:class:`jaxunlearn.models.cvae.CVAE`)."""

    module: Any


class MethodEntry(NamedTuple):
    """``family`` (module docstring); ``build(problem, **settings) -> Unlearner``; ``test_settings``:
    small settings under which the contract battery runs it quickly; ``knows_num_classes``: whether
    ``init`` can reject labels ``>= C`` (every method rejects negative labels)."""

    family: str
    build: Callable[..., Unlearner]
    test_settings: dict
    knows_num_classes: bool = False


def _classifier(make: Callable[[ClassifierProblem, dict], Unlearner], test_settings: dict,
                knows_num_classes: bool = True) -> MethodEntry:
    return MethodEntry("classifier", lambda problem, **settings: make(problem, settings), test_settings,
                       knows_num_classes)


def _gauss_newton(p: ClassifierProblem):
    from jaxunlearn.models import per_example_cross_entropy

    return (lambda params, batch: p.logits_fn(params, batch[0]),
            lambda out, batch: per_example_cross_entropy(out, batch[1]).mean())


def _lipschitz(p: ClassifierProblem, s: dict) -> Unlearner:
    if p.train_apply is None:
        return methods.lipschitz(p.logits_fn, train_mode=False, num_classes=p.num_classes, **s)
    return methods.lipschitz(p.train_apply, num_classes=p.num_classes, **s)


def _sampler(kind: str, problem: BayesProblem, friction: float) -> Any:
    from jaxunlearn.bayes import samplers

    energy_fn = problem.energy.energy
    return samplers.sgld(energy_fn) if kind == "sgld" else samplers.sghmc(energy_fn, friction)


def _mcmc(kind: str) -> MethodEntry:
    """MCMC forgetting with SGLD or SGHMC (setting ``alpha``: SGHMC's friction, 0.4 as BIF)."""

    def build(problem: BayesProblem, *, alpha: float = 0.4, **settings):
        settings = {"scaling0": 0.1, "iter_T": 8, "samp_T": 2, "batch_size": 8, "lr": problem.lr, **settings}
        return methods.mcmc_forgetting(problem.energy, _sampler(kind, problem, alpha), **settings)

    return MethodEntry("mcmc", build, {"iter_T": 3, "samp_T": 1, "batch_size": 4})


def _importance_sampling(problem: BayesProblem, **settings) -> Unlearner:
    settings = {"num_steps": 100, "batch_size": 8, "lr": problem.lr, **settings}
    return methods.importance_sampling(_sampler("sgld", problem, 0.0), **settings)


def _vi(problem: BayesProblem, **settings) -> Unlearner:
    settings = {"scaling0": 0.1, "iter_T": 16, "batch_size": 8, **settings}
    return methods.vi_forgetting(problem.energy, **settings)


def _selective_amnesia(problem: CVAEProblem, **settings) -> Unlearner:
    settings = {"progress": False, **settings}
    return methods.selective_amnesia(problem.module, **settings)


REGISTRY: dict[str, MethodEntry] = {
    "finetune": _classifier(lambda p, s: methods.finetune(p.loss_fn, num_classes=p.num_classes, **s),
                            {"num_epochs": 1}),
    "retrain": _classifier(lambda p, s: methods.retrain(p.init_fn, p.loss_fn, num_classes=p.num_classes,
                                                        **{"num_epochs": 1, **s}), {"num_epochs": 1}),
    "neggrad": _classifier(lambda p, s: methods.neggrad(p.loss_fn, num_classes=p.num_classes, **s),
                           {"num_epochs": 1}),
    "neggrad+": _classifier(lambda p, s: methods.neggrad_plus(p.loss_fn, num_classes=p.num_classes, **s),
                            {"num_epochs": 1}),
    "amnesiac": _classifier(lambda p, s: methods.amnesiac(p.loss_fn, num_classes=p.num_classes, **s),
                            {"num_epochs": 1}),
    "bad_teacher": _classifier(lambda p, s: methods.bad_teacher(p.logits_fn, p.init_fn, num_classes=p.num_classes,
                                                                **s), {"num_epochs": 1}),
    "scrub": _classifier(lambda p, s: methods.scrub(p.logits_fn, num_classes=p.num_classes, **s),
                         {"num_epochs": 2, "msteps": 1}),
    "random_labels": _classifier(lambda p, s: methods.random_labels(p.loss_fn, num_classes=p.num_classes, **s),
                                 {"num_epochs": 1}),
    "salun": _classifier(lambda p, s: methods.salun(p.loss_fn, num_classes=p.num_classes, **s), {"num_epochs": 1}),
    "l1_sparse": _classifier(lambda p, s: methods.l1_sparse(p.loss_fn, num_classes=p.num_classes, **s),
                             {"num_epochs": 1}),
    "unsir": _classifier(lambda p, s: methods.unsir(p.loss_fn, num_classes=p.num_classes, **s),
                         {"noise_steps": 2, "noise_batch_size": 4, "noise_copies": 1, "samples_per_class": 2}),
    "boundary_shrink": _classifier(lambda p, s: methods.boundary_shrink(p.logits_fn, num_classes=p.num_classes, **s),
                                   {"num_epochs": 1}),
    "boundary_expand": _classifier(lambda p, s: methods.boundary_expand(p.logits_fn, num_classes=p.num_classes, **s),
                                   {"num_epochs": 1}),
    "influence": _classifier(lambda p, s: methods.influence(
        p.loss_fn, num_classes=p.num_classes, **{"gauss_newton": _gauss_newton(p), "damping": 1e-2, **s}), {}),
    "influence_lissa": _classifier(lambda p, s: methods.influence(
        p.loss_fn, num_classes=p.num_classes,
        **{"solver": "lissa", "gauss_newton": _gauss_newton(p), "damping": 1e-2, **s}),
        {"lissa_depth": 8, "lissa_batch_size": 8, "lissa_scale": 0.05}),
    "ssd": _classifier(lambda p, s: methods.ssd(p.loss_fn, num_classes=p.num_classes, **s), {}),
    "lfssd": _classifier(lambda p, s: methods.lfssd(p.logits_fn, num_classes=p.num_classes, **s), {}),
    "jit": _classifier(_lipschitz, {"num_samples": 4}),
    "vi_forgetting": MethodEntry("vi", _vi, {"iter_T": 4, "bbp_T": 2, "batch_size": 4}),
    "mcmc_sgld": _mcmc("sgld"),
    "mcmc_sghmc": _mcmc("sghmc"),
    "importance_sampling": MethodEntry("mcmc", _importance_sampling, {"num_steps": 5, "batch_size": 4}),
    "selective_amnesia": MethodEntry("cvae", _selective_amnesia,
                                     {"num_steps": 3, "batch_size": 8, "num_fisher_samples": 16}, True),
}


def names(family: str | None = None) -> tuple[str, ...]:
    """Every registered method name (of one ``family`` when given)."""
    return tuple(n for n, e in REGISTRY.items() if family is None or e.family == family)


def build(name: str, problem: Any, **settings: Any) -> Unlearner:
    """The method ``name`` configured for ``problem`` (a problem of its family), ``settings`` overriding defaults."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(REGISTRY)}.")
    return REGISTRY[name].build(problem, **settings)
