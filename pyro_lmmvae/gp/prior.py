"""Spectrally scaled priors: a Fourier basis with this prior is a reduced-rank GP (spec §6).

A coefficient ``a`` of basis column ``(cos|sin) ω_m t`` gets the prior ``N(0, Λ_m)`` with

* regular grid (``fourier``), SE or Matérn kernel: ``Λ_m = 2 S(ω_m) Δω``, ``Δω = 2π/T``;
* regular grid, periodic kernel (period = the basis period): ``Λ_m = 2σ² e^{−ℓ⁻²} I_m(ℓ⁻²)``;
* random frequencies (``rff``): ``Λ = σ²/M`` (the kernel and lengthscale are the ones the
  frequencies were drawn with, in the formula).

Integrating the coefficients out gives each latent dimension the prior covariance
``φ(t)ᵀ Λ φ(t')``, which converges to the kernel as ``M`` grows (the ``ω_0`` term is the
intercept's). Columns that are not basis columns (intercept, linear terms, factors) keep
``N(0, scale²)``. In an interaction such as ``sex:fourier(age, 4)`` each column takes the
``Λ_m`` of its basis column: the prior ``I ⊗ Λ`` of an additive GP with a categorical ×
continuous component.

Every basis term has its own variance and lengthscale, fixed or learned as point estimates on the
ELBO (``learn=``); :meth:`SpectralPrior.hyperparameters` reads them and ``effects()`` reports
them.

Examples
--------
>>> prior = SpectralPrior("matern32", lengthscale=12.0, learn="variance")
>>> # LMMVAE("~ 1 + age + fourier(age, 8)", ..., fixed_prior=prior)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroParam

from pyro_lmmvae.gp.bases import BasisColumn
from pyro_lmmvae.gp.kernels import (
    KERNEL_NAMES,
    Kernel,
    periodic_weights,
    positive_float,
    spectral_density,
)
from pyro_lmmvae.priors import EffectPrior

__all__ = ["SpectralPrior"]

KernelSpec = str | Kernel
_LEARNABLE = ("variance", "lengthscale")


def _learn_set(learn: bool | str | Sequence[str]) -> frozenset[str]:
    if learn is True:
        return frozenset(_LEARNABLE)
    if learn is False or learn is None:
        return frozenset()
    names = {learn} if isinstance(learn, str) else set(learn)
    unknown = names - set(_LEARNABLE)
    if unknown:
        raise ValueError(f"learn must name {_LEARNABLE} (or be True/False), got {sorted(unknown)}")
    return frozenset(names)


def _norm(name: str) -> str:
    return name.replace(" ", "")


class SpectralPrior(EffectPrior):
    """``N(0, Λ)`` on the basis columns of an effect matrix, ``N(0, scale²)`` on the others.

    Parameters
    ----------
    kernel : {"se", "matern12", "matern32", "matern52", "periodic", "none"} or Kernel
        Kernel of every basis term without an entry in ``terms``. A :class:`Kernel` fixes its
        variance and lengthscale (and, if periodic, must have the basis period); a name takes
        ``variance`` and ``lengthscale`` below. ``"none"`` leaves the columns unscaled.
    variance : float, default 1.0
        ``σ²`` of a kernel given by name.
    lengthscale : float, optional
        ``ℓ`` of a kernel given by name, in the raw units of the covariate (for the periodic
        kernel, relative to the period as in ``exp(−2 sin²(πτ/T)/ℓ²)``). Default: ``T/8`` for an
        SE or Matérn kernel on a regular basis of period ``T`` (a quarter of the training range
        with the default period) and 1.0 for the periodic kernel.
    learn : bool, str or sequence of str, default False
        Which of ``"variance"``, ``"lengthscale"`` to learn as point estimates (one per basis
        term), initialised at the values above. ``rff`` terms can learn only their variance:
        their frequencies were drawn at the formula's lengthscale.
    terms : mapping of str to kernel, optional
        Per-term kernels, keyed by the formula term (``"sex:fourier(age, 4)"``) or by the basis
        call, which then covers every term using it (``"fourier(age, 4)"``); spaces are ignored.
    scale : float, default 1.0
        Standard deviation of the prior on non-basis columns.
    """

    def __init__(
        self,
        kernel: KernelSpec = "se",
        *,
        variance: float = 1.0,
        lengthscale: float | None = None,
        learn: bool | str | Sequence[str] = False,
        terms: Mapping[str, KernelSpec] | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.kernel = self._check_kernel(kernel, "kernel")
        self.variance_init = positive_float("variance", variance)
        self.lengthscale_init = (
            None if lengthscale is None else positive_float("lengthscale", lengthscale)
        )
        self.learn = _learn_set(learn)
        self.terms = {
            _norm(k): self._check_kernel(v, f"terms[{k!r}]") for k, v in (terms or {}).items()
        }
        self.scale = positive_float("scale", scale)
        self.columns: tuple[BasisColumn | None, ...] | None = None
        self.term_names: tuple[str, ...] = ()
        self._term_kernels: tuple[str, ...] = ()

    def config(self) -> dict:
        """The constructor arguments as plain values (kernels as names or field dicts)."""
        return {
            "type": "spectral",
            "kernel": _kernel_config(self.kernel),
            "variance": self.variance_init,
            "lengthscale": self.lengthscale_init,
            "learn": sorted(self.learn),
            "terms": {k: _kernel_config(v) for k, v in self.terms.items()},
            "scale": self.scale,
        }

    @classmethod
    def from_config(cls, config: dict) -> SpectralPrior:
        """Inverse of :meth:`config`."""
        return cls(
            _kernel_from_config(config["kernel"]),
            variance=config["variance"],
            lengthscale=config["lengthscale"],
            learn=list(config["learn"]),
            terms={k: _kernel_from_config(v) for k, v in config["terms"].items()},
            scale=config["scale"],
        )

    @staticmethod
    def _check_kernel(kernel: KernelSpec, what: str) -> KernelSpec:
        if isinstance(kernel, Kernel):
            return kernel
        if kernel == "none" or kernel in KERNEL_NAMES:
            return kernel
        raise ValueError(
            f"{what} must be a Kernel or one of {(*KERNEL_NAMES, 'none')}, got {kernel!r}"
        )

    # ------------------------------------------------------------------ binding
    def bind(self, columns: Sequence[BasisColumn | None]) -> None:
        """Attach the prior to the columns of its effect matrix (done by the model).

        Parameters
        ----------
        columns : sequence of (BasisColumn or None)
            One entry per column of the effect matrix (``Design.fixed_bases`` or
            ``Design.random_bases``).
        """
        columns = tuple(columns)
        if columns == self.columns:
            return
        unknown = (
            set(self.terms)
            - {_norm(c.term) for c in columns if c is not None}
            - {_norm(c.basis) for c in columns if c is not None}
        )
        if unknown:
            raise ValueError(
                f"SpectralPrior terms {sorted(unknown)} are not basis terms of this effect matrix; "
                f"its basis terms are {sorted({c.term for c in columns if c is not None})}"
            )
        names: list[str] = []
        kernels: list[str] = []
        variances: list[float] = []
        lengthscales: list[float] = []
        term_of_column: list[int] = []
        for col in columns:
            if col is None:
                term_of_column.append(-1)
                continue
            if col.term not in names:
                name, var, ell = self._resolve(col)
                names.append(col.term)
                kernels.append(name)
                variances.append(var)
                lengthscales.append(ell)
            index = names.index(col.term)
            term_of_column.append(-1 if kernels[index] == "none" else index)
        self.columns = columns
        self.term_names = tuple(names)
        self._term_kernels = tuple(kernels)
        default = torch.get_default_dtype()
        self.register_buffer("_term_of_column", torch.tensor(term_of_column, dtype=torch.long))
        self.register_buffer(
            "_frequency",
            torch.tensor([c.frequency if c else 0.0 for c in columns], dtype=default),
        )
        self.register_buffer(
            "_spacing",
            torch.tensor([c.spacing if c and c.period else 0.0 for c in columns], dtype=default),
        )
        # per-column constants, so that column_variance needs no host sync or Python per column
        self.register_buffer(
            "_harmonic", torch.tensor([c.harmonic if c else 0 for c in columns], dtype=default)
        )
        self.register_buffer(
            "_n_frequencies",
            torch.tensor([c.n_frequencies if c else 1 for c in columns], dtype=default),
        )
        column_kernel = [kernels[i] if i >= 0 else "none" for i in term_of_column]
        self._kernels_used = tuple(sorted(set(column_kernel) - {"none"}))
        self.register_buffer(
            "_kernel_of_column",
            torch.tensor(
                [self._kernels_used.index(k) if k != "none" else -1 for k in column_kernel],
                dtype=torch.long,
            ),
        )
        for attr, values in (("variance", variances), ("lengthscale", lengthscales)):
            if hasattr(self, attr):
                delattr(self, attr)
            tensor = torch.tensor(values, dtype=default)
            if attr in self.learn:
                setattr(self, attr, PyroParam(tensor, constraint=constraints.softplus_positive))
            else:
                self.register_buffer(attr, tensor)

    def _resolve(self, col: BasisColumn) -> tuple[str, float, float]:
        spec = self.terms.get(_norm(col.term), self.terms.get(_norm(col.basis), self.kernel))
        if spec == "none":
            return "none", 1.0, 1.0
        if isinstance(spec, Kernel):
            name, var, ell = spec.name, spec.variance, spec.lengthscale
            if spec.name == "periodic" and col.period is not None:
                if not math.isclose(spec.period, col.period, rel_tol=1e-9):
                    raise ValueError(
                        f"{col.term}: the periodic kernel's period {spec.period} differs from the "
                        f"basis period {col.period}; pass period={spec.period} to the basis"
                    )
        else:
            name, var = spec, self.variance_init
            if self.lengthscale_init is not None:
                ell = self.lengthscale_init
            elif name == "periodic" or col.period is None:
                ell = 1.0
            else:
                ell = col.period / 8.0
        if col.kind == "random":
            if "lengthscale" in self.learn:
                raise ValueError(
                    f"{col.term}: random-frequency terms cannot learn a lengthscale (their "
                    "frequencies were drawn at the formula's lengthscale); use learn='variance'"
                )
            return "random", var, ell
        if name == "periodic" and col.period is None:  # pragma: no cover - regular bases have T
            raise ValueError(f"{col.term}: the periodic kernel needs a regular basis")
        return name, var, ell

    # ------------------------------------------------------------------ prior
    def column_variance(self) -> torch.Tensor:
        """``Λ`` of every column (``scale²`` for non-basis columns), shape (Q,)."""
        if self.columns is None:
            raise RuntimeError(
                "this SpectralPrior is not bound to design columns yet: pass it to LMMVAE (or "
                "MixedEffects) as fixed_prior/random_prior"
            )
        out = torch.full_like(self._frequency, self.scale**2)
        if not self._kernels_used:  # no scaled basis column (e.g. a formula without bases)
            return out
        term = self._term_of_column.clamp(min=0)
        var, ell = self.variance[term], self.lengthscale[term]
        for code, name in enumerate(self._kernels_used):
            if name == "random":
                lam = var / self._n_frequencies
            elif name == "periodic":
                lam = 2.0 * periodic_weights(self._harmonic, var, ell)
            else:
                lam = 2.0 * spectral_density(name, self._frequency, var, ell) * self._spacing
            out = torch.where(self._kernel_of_column == code, lam, out)
        return out

    def forward(self, shape: tuple[int, ...]) -> dist.TorchDistribution:
        variance = self.column_variance()
        if shape[-1] != variance.shape[0]:
            raise ValueError(
                f"SpectralPrior is bound to {variance.shape[0]} columns, asked for shape {shape}"
            )
        return dist.Normal(torch.zeros_like(variance), variance.sqrt()).expand(torch.Size(shape))

    def hyperparameters(self) -> dict[str, dict[str, float | str | bool]]:
        """``{term: {"kernel", "variance", "lengthscale", "learned"}}`` of the bound terms."""
        out = {}
        for index, (term, name) in enumerate(zip(self.term_names, self._term_kernels, strict=True)):
            entry: dict[str, float | str | bool] = {"kernel": name}
            if name != "none":
                entry["variance"] = float(self.variance[index].detach())
                if name != "random":
                    entry["lengthscale"] = float(self.lengthscale[index].detach())
                entry["learned"] = ", ".join(sorted(self.learn)) or "none"
            out[term] = entry
        return out

    def describe(self) -> str:
        if self.columns is None:
            return f"SpectralPrior({self.kernel!r}, unbound)"
        parts = []
        for term, h in self.hyperparameters().items():
            values = ", ".join(f"{k}={v:.4g}" for k, v in h.items() if isinstance(v, float))
            parts.append(f"{term}: {h['kernel']}({values})")
        learned = f"; learned {', '.join(sorted(self.learn))}" if self.learn else ""
        return (
            f"SpectralPrior({'; '.join(parts)}; other columns Normal(0, {self.scale:.4g}){learned})"
        )


def _kernel_config(kernel: KernelSpec) -> str | dict:
    if isinstance(kernel, Kernel):
        return {
            "name": kernel.name,
            "variance": kernel.variance,
            "lengthscale": kernel.lengthscale,
            "period": kernel.period,
        }
    return kernel


def _kernel_from_config(config: str | dict) -> KernelSpec:
    return config if isinstance(config, str) else Kernel(**config)
