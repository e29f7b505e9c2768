"""Guide of the GSNN objective (spec §4): q(z | y, x) is the prior, so only the effects remain.

The model draws the latent noise itself and records ``z`` as a deterministic site; the guide
holds q(A) (mean-field, as in the ELBO) or nothing when A is a point estimate of the model.
"""

from __future__ import annotations

from pyro_lmmvae.data import Batch
from pyro_lmmvae.pyro_module import LocalPyroModule

from .effects import MeanFieldEffects


class GSNNGuide(LocalPyroModule):
    """The effect factors alone.

    Parameters
    ----------
    effects : MeanFieldEffects or None
        q(A_f) and q(u_p); None when the model holds A as point estimates.
    """

    encoder = None

    def __init__(self, effects: MeanFieldEffects | None) -> None:
        super().__init__()
        self.effects = effects

    def with_effects(self, effects: MeanFieldEffects | None, eta_source=None) -> GSNNGuide:
        """The guide over other effect factors (e.g. of new instances)."""
        return GSNNGuide(effects)

    def forward(self, batch: Batch) -> None:
        if self.effects is not None:
            self.effects(batch)
