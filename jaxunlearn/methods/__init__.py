"""Unlearning methods, one module each, every one an :class:`Unlearner` on one contract (:mod:`.base`).

Classifier unlearning: :func:`ssd` / :func:`lfssd` (Selective Synaptic
Dampening), :func:`lipschitz` (JiT), :func:`influence` (Newton removal), and
the baselines :func:`retrain`, :func:`finetune`, :func:`neggrad`,
:func:`neggrad_plus`, :func:`amnesiac`, :func:`bad_teacher`, :func:`scrub`, and
the methods of the sparsity/saliency and boundary papers: :func:`random_labels`,
:func:`salun`, :func:`l1_sparse`, :func:`unsir`, :func:`boundary_shrink`,
:func:`boundary_expand`.
Bayesian: :func:`vi_forgetting`, :func:`mcmc_forgetting` and the
:func:`importance_sampling` baseline. Generative: :func:`selective_amnesia`.

Each function is exported under its module's name (``methods.ssd`` is the
function); import a module's other names from the module itself, e.g.
``from jaxunlearn.methods.lipschitz import train_mode_apply``. Every method is
also in :mod:`jaxunlearn.methods.registry` by name, built from the model it
unlearns.
"""

from jaxunlearn.methods.amnesiac import amnesiac
from jaxunlearn.methods.bad_teacher import bad_teacher
from jaxunlearn.methods.base import DataState, Request, Unlearner, unlearn
from jaxunlearn.methods.boundary import boundary_expand, boundary_shrink
from jaxunlearn.methods.finetune import finetune
from jaxunlearn.methods.influence import influence
from jaxunlearn.methods.l1_sparse import l1_sparse
from jaxunlearn.methods.lipschitz import lipschitz
from jaxunlearn.methods.mcmc_forgetting import importance_sampling, mcmc_forgetting
from jaxunlearn.methods.neggrad import neggrad, neggrad_plus
from jaxunlearn.methods.random_labels import random_labels
from jaxunlearn.methods.retrain import retrain
from jaxunlearn.methods.salun import salun
from jaxunlearn.methods.scrub import scrub
from jaxunlearn.methods.selective_amnesia import selective_amnesia
from jaxunlearn.methods.ssd import lfssd, ssd
from jaxunlearn.methods.unsir import unsir
from jaxunlearn.methods.vi_forgetting import vi_forgetting

__all__ = [
    "DataState", "Request", "Unlearner", "amnesiac", "bad_teacher", "boundary_expand", "boundary_shrink", "finetune",
    "importance_sampling", "influence", "l1_sparse", "lfssd", "lipschitz", "mcmc_forgetting", "neggrad",
    "neggrad_plus", "random_labels", "retrain", "salun", "scrub", "selective_amnesia", "ssd", "unlearn", "unsir",
    "vi_forgetting",
]
