"""Bayesian building blocks of Bayesian forgetting (Fu et al. 2021; Fu et al., ICLR 2022).

* :mod:`~jaxunlearn.bayes.energies`: ``F_hat(theta, B) = R(theta) + n * mean l`` and the
  forget term ``sum_{S'} h`` for the Bayesian network, the variational network and the two
  Gaussian mixtures.
* :mod:`~jaxunlearn.bayes.samplers`: SGLD (blackjax's kernel) and SGHMC with persistent
  momentum (built on blackjax's SGHMC diffusion), step-size schedules, jittable chains.
* :mod:`~jaxunlearn.bayes.vi`: Bayes by Backprop training with optax.
* static-shape minibatches from the remaining points, never a removed one: independent draws
  and shuffled epochs (:mod:`jaxunlearn.data.minibatch`, re-exported here).

The forgetting methods themselves live in :mod:`jaxunlearn.methods.vi_forgetting` and
:mod:`jaxunlearn.methods.mcmc_forgetting`.
"""

from jaxunlearn.bayes.energies import Energy, bnn_energy, gaussian_prior, gmm_energy, vbnn_energy, vgmm_energy
from jaxunlearn.bayes.samplers import (
    ChainTrace, Sampler, SamplerState, constant_decay, power_decay, run_chain, sghmc, sgld, step_decay,
)
from jaxunlearn.bayes.vi import VIResult, fit_vi
from jaxunlearn.data.minibatch import all_alive, check_batches, draw_batches, draw_indices, shuffled_batches, take

__all__ = [
    "ChainTrace", "Energy", "Sampler", "SamplerState", "VIResult", "all_alive", "bnn_energy", "check_batches",
    "constant_decay", "draw_batches", "draw_indices", "fit_vi", "gaussian_prior", "gmm_energy", "power_decay",
    "run_chain", "sghmc", "sgld", "shuffled_batches", "step_decay", "take", "vbnn_energy", "vgmm_energy",
]
