"""The encoders: the formula evaluated by formulae, with the basis columns it holds.

:class:`_Encoders` (a base of :class:`~pyro_lmmvae.design.Design`) builds formulae's stateful
encoders of the fixed and random parts on the (prepared) training rows, which then encode new
data identically, names their columns and finds the ``fourier``/``rff`` basis columns among them.
"""

from __future__ import annotations

# formulae evaluates the terms in the namespace of design_matrices' caller, this module's:
# `np` is what makes np.log(t + 1) and other numpy calls work in formulas.
import numpy as np  # noqa: F401
import pandas as pd
from formulae import design_matrices
from formulae.parser import ParseError

from pyro_lmmvae.design.formula import _NUMBER_HINT
from pyro_lmmvae.gp.bases import basis_labels, basis_namespace


class _Encoders:
    """Evaluation of the formula for :class:`~pyro_lmmvae.design.Design` (a base class)."""

    def _build_encoders(self) -> None:
        frame = self._prepare(self._reference, ordered=True)
        namespace = basis_namespace(self.standardization if self.scaling == "inputs" else {})
        self._fixed_encoder = self._encoder(self._fixed_rhs, frame, namespace)
        self._random_encoder = self._encoder(self._random_rhs, frame, namespace)
        fixed_labels, self.fixed_bases, fixed_transforms = basis_labels(self._fixed_encoder)
        random_labels, self.random_bases, random_transforms = basis_labels(self._random_encoder)
        self._bases = {**fixed_transforms, **random_transforms}
        self.fixed_terms = fixed_labels
        self.random_terms = tuple("1" if name == "Intercept" else name for name in random_labels)
        self.random_blocks = self._blocks()
        self._check_design_finite()
        self._column_scaling = self._fit_column_scaling()

    def _encoder(self, rhs: str | None, frame: pd.DataFrame, namespace: dict):
        if not rhs:
            return None
        try:
            return design_matrices(rhs, frame, na_action="error", extra_namespace=namespace).common
        except ParseError as err:  # formulae re-prints small floats as 1e-05, which it rejects
            raise ValueError(
                f"formula {self.formula!r}: formulae cannot re-read the terms {rhs!r} ({err}); "
                f"{_NUMBER_HINT}"
            ) from err
        except ValueError as err:
            raise ValueError(f"formula {self.formula!r}: {err}") from err
        except TypeError as err:  # arithmetic or a numpy function on a categorical/text column
            columns = sorted(c for c in self._variables if c in self.categories)
            hint = (
                f"; {columns} are categorical or text here: convert them to numbers first"
                if columns
                else ""
            )
            raise ValueError(f"formula {self.formula!r} cannot be evaluated: {err}{hint}") from err
        except KeyError as err:  # a name formulae cannot resolve: not a column, not a function
            name = err.args[0] if err.args else "?"
            raise ValueError(
                f"formula {self.formula!r} calls {name!r}, which is neither a data column nor a "
                "known function (numpy's as np., formulae's C, center, scale, poly, bs, or "
                "fourier, rff); check the spelling"
            ) from err
