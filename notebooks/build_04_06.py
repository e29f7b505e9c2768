"""Generate notebooks 04-06 (Health MNIST, the GP connection, PhysioNet) without outputs.

Usage (from the repository root)::

    python notebooks/build_04_06.py            # writes notebooks/0{4,5,6}_*.ipynb, no outputs
    cd notebooks && jupyter nbconvert --to notebook --execute --inplace 04_health_mnist.ipynb

The committed notebooks carry the outputs of a full-size run (``PYRO_LMMVAE_NOTEBOOK_SMALL``
unset, ``PYRO_LMMVAE_DATA`` unset so that ``../../shared/data`` is read). Rebuilding drops them:
execute the notebooks again afterwards. Cell ids are fixed, so a rebuild changes only what was
edited here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

PARAMETERS = """\
import os

SMALL = os.environ.get("PYRO_LMMVAE_NOTEBOOK_SMALL") == "1"  # CI: tiny sizes, few epochs
DATA_ROOT = os.environ.get("PYRO_LMMVAE_DATA", "../../shared/data")  # real-data notebooks"""


def notebook(prefix: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """Cells are ``("md" | "code" | "parameters", source)``; ids are ``<prefix>-<index>``."""
    out = []
    for i, (kind, source) in enumerate(cells):
        source = source.strip("\n")
        if kind == "md":
            cell = new_markdown_cell(source)
        else:
            cell = new_code_cell(source)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
        cell["id"] = f"{prefix}-{i:02d}"
        out.append(cell)
    nb = new_notebook(cells=out)
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "name": "python3",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


# ============================================================================================
# 04 Health MNIST
# ============================================================================================
HEALTH_MNIST = [
    (
        "md",
        r"""
# 04 · Health MNIST: imputation, future prediction and readable effects

The main experiment of the LMM-VAE paper (Ong, Haußmann, Lönnroth, Lähdesmäki, 2024), at a size
that runs on a laptop CPU in a few minutes. Health MNIST (the LVAE paper's generator) turns each
MNIST '3' or '6' into a **patient** followed over time:

* `sex` is the digit ('3' = 0, '6' = 1), `age` the time point `t = 0..19`;
* the digit drifts diagonally with age (a shift of `t/10` pixels), and half of the patients are
  **diseased**: from age about 9 on their digit rotates by up to 45°
  (`diseasePresence`, `diseaseAge = t - 9`);
* `location` is a nuisance covariate with no effect on the image;
* a quarter of the pixels of every frame is missing at random.

We fit an oLMM-VAE whose latent prior is the richest covariate set of the paper's benchmark
(`benchmarks/paper/configs/health_mnist.toml`, set (iii)), with the paper's convolutional
networks (`network="health_mnist"`), then look at imputations, future predictions and the fixed
effects of sex × age and disease.

**Reduced sizes.** The paper uses 1,000 patients, latent sizes 16 and 32 and up to 500 epochs;
here 200 patients, L = 16 and 60 epochs (about 2.5 minutes of training on one CPU thread), so
the numbers below are those of a short run, not the paper's. `SMALL` mode (CI) shrinks everything
further and only checks that every step runs.
""",
    ),
    ("parameters", PARAMETERS),
    (
        "code",
        """
%matplotlib inline
import time
import warnings

# tqdm warns in Jupyter without ipywidgets (the fits below show no progress bar anyway)
warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from pyro_lmmvae import LMMVAE, arviz_compat
from pyro_lmmvae.datasets import make_health_mnist

started = time.perf_counter()
torch.manual_seed(0)
# One torch thread: for these small models it was 1.5-10x faster than two on the shared 2-core
# machine that ran this notebook (threads fight over the cores); try more on a dedicated machine.
torch.set_num_threads(1)

n_per_digit = 4 if SMALL else 100  # instances per digit: P = 2 * n_per_digit (paper: 500)
n_times = 10 if SMALL else 20  # frames per instance (paper: 20)
latent_dim = 4 if SMALL else 16  # paper: 16 and 32
epochs = 2 if SMALL else 60  # paper: up to 500
print(f"SMALL={SMALL}: P={2 * n_per_digit}, frames={n_times}, L={latent_dim}, epochs={epochs}")
""",
    ),
    (
        "md",
        r"""
## The data

`make_health_mnist` reads the raw MNIST training files from `DATA_ROOT/mnist` (nothing is
downloaded) and returns a `LongitudinalDataset`: a covariate table with one row per frame,
the masked images `y` (36 × 36 = 1,296 pixels, 0 where missing), the `mask` of observed pixels
and the complete images `y_true`. `balanced=True` makes exactly half of each digit diseased.

The split follows the paper: 10% of the instances are **test instances** whose frames from
`t = 5` on are held out (future prediction); their first five frames and all frames of the other
instances are split 80/20 into training and validation rows.
""",
    ),
    (
        "code",
        """
ds = make_health_mnist(
    root=os.path.join(DATA_ROOT, "mnist"),
    n_per_digit=n_per_digit,
    n_times=n_times,
    balanced=True,
    seed=0,
)
train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
print(ds.data["split"].value_counts().to_dict())
print(f"observed pixels: {ds.mask.mean():.1%}")

assert ds.y.shape == (2 * n_per_digit * n_times, 36 * 36) and ds.y.shape == ds.mask.shape
assert np.all(ds.y[~ds.mask] == 0)  # missing pixels carry no information
assert np.array_equal(ds.y[ds.mask], ds.y_true[ds.mask])  # observed pixels are the truth
assert 0.6 < ds.mask.mean() < 0.9  # about 25% missing
ds.data.head()
""",
    ),
    (
        "md",
        """
Two instances over time: the complete frames and what the model is given (missing pixels in
blue). The diseased one starts to rotate around `t = 9`.
""",
    ),
    (
        "code",
        """
def image(v):
    return np.asarray(v).reshape(36, 36)


gray = plt.get_cmap("gray").copy()
gray.set_bad("#3b6fb6")  # missing pixels


def masked(v, m):
    return np.ma.masked_array(image(v), ~image(m))


per_instance = ds.data.groupby("id")[["diseasePresence", "sex"]].first()
shown = [
    per_instance.index[(per_instance.diseasePresence == 0)][0],
    per_instance.index[(per_instance.diseasePresence == 1)][0],
]
frames = np.unique(np.linspace(0, n_times - 1, 10).round().astype(int))
fig, axes = plt.subplots(4, len(frames), figsize=(1.1 * len(frames), 4.8))
for k, label in enumerate(shown):
    rows = np.flatnonzero(ds.data["id"].to_numpy() == label)
    status = "diseased" if per_instance.loc[label, "diseasePresence"] else "healthy"
    for j, t in enumerate(frames):
        r = rows[ds.data["age"].to_numpy()[rows] == t][0]
        axes[2 * k, j].imshow(image(ds.y_true[r]), cmap="gray", vmin=0, vmax=1)
        axes[2 * k + 1, j].imshow(masked(ds.y[r], ds.mask[r]), cmap=gray, vmin=0, vmax=1)
        axes[0, j].set_title(f"t={t}", fontsize=8)
    axes[2 * k, 0].set_ylabel(f"{label}\\n{status}\\ntruth", fontsize=8)
    axes[2 * k + 1, 0].set_ylabel("input", fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
""",
    ),
    (
        "md",
        r"""
## The model

The latent prior is a linear mixed model written as an lme4 formula. Covariate set (iii) of the
benchmark configuration, plus the per-instance random intercept `(1 | id)`:

* `sex:age` lets the two digits age differently;
* `diseasePresence + diseaseAge_z + diseasePresence:diseaseAge_z` describe the disease: an offset
  and a slope in the (z-scored) time since disease onset, for diseased instances only
  (`diseaseAge_z` is the dataset's own scaling on diseased training rows; `age` is z-scored by
  the design, `standardize=["age"]`);
* `location` has no effect on the images: a control term.

`network="health_mnist"` picks the paper's convolutional encoder and decoder (Table 9). As in the
benchmark harness, the pixels get a fixed Gaussian noise sd of 0.1 (`noise_scale`) and the
per-instance random effects their own learning rate (`local_lr`): each instance is in one batch
per epoch, so with the global learning rate they would barely move in a short run. A small
batch (4 instances, about 60 frames) gives more optimiser steps per epoch on this small dataset.

With a pixel noise sd of 0.1 the Gaussian log density of a well reconstructed pixel is positive,
so the negative ELBO drops below zero as the fit improves. In the run stored here it first sits
on a plateau for about 20 epochs; a trial run stopped at 25 epochs predicted the future frames
no better than the per-age mean image (MSE 0.038 against 0.039).
""",
    ),
    (
        "code",
        """
formula = (
    "~ 1 + age + diseasePresence + diseaseAge_z + sex + location"
    " + sex:age + diseasePresence:diseaseAge_z + (1 | id)"
)
model = LMMVAE(
    formula,
    data=train.data,
    y=train.y,
    mask=train.mask,
    latent_dim=latent_dim,
    network="health_mnist",
    noise_scale=0.1,
    standardize=["age"],
    seed=0,
)
fit_started = time.perf_counter()
model.fit(
    max_epochs=epochs,
    batch_size=4,
    lr=2e-3,
    local_lr=1e-2,
    validation=(val.data, val.y, val.mask),
    progress=False,
)
print(f"fit: {time.perf_counter() - fit_started:.0f} s, best epoch {model.history.best_epoch}")

history = model.history
assert len(history.train_loss) == epochs and np.all(np.isfinite(history.train_loss))
assert history.train_loss[-1] < history.train_loss[0]  # the negative ELBO went down

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(history.train_loss, "o-", label="training")
ax.plot(history.val_loss, "o-", label="validation")
ax.set_xlabel("epoch")
ax.set_ylabel("negative ELBO per frame")
ax.set_ylim(min(history.train_loss + history.val_loss) - 50, history.val_loss[0] + 100)
ax.legend();
""",
    ),
    (
        "md",
        r"""
## Imputation

`impute()` encodes each training frame from its observed pixels and decodes it,
`g(μ_φ(ỹ_i))`; with the default `keep_observed=True` the observed pixels are kept as they were
and only the missing ones are filled in. We compare the filled-in pixels with the truth, and
with the simplest imputer, the mean of each pixel over the observed training frames.
""",
    ),
    (
        "code",
        """
filled = model.impute()  # (training rows, 1296)
assert filled.shape == train.y.shape and np.all(np.isfinite(filled))
assert np.allclose(filled[train.mask], train.y[train.mask])  # observed pixels untouched

missing = ~train.mask
pixel_mean = (train.y * train.mask).sum(0) / np.maximum(train.mask.sum(0), 1)
mse_model = float(((filled - train.y_true)[missing] ** 2).mean())
mse_mean = float(((pixel_mean - train.y_true)[missing] ** 2).mean())
print(f"MSE on the missing pixels: model {mse_model:.4f}, per-pixel mean {mse_mean:.4f}")

test_ids = set(test.data["id"])  # their training frames stop at t = 4
label = next(i for i in train.data["id"] if i not in test_ids)
rows = np.flatnonzero(train.data["id"].to_numpy() == label)[:8]
fig, axes = plt.subplots(3, len(rows), figsize=(1.1 * len(rows), 3.6))
for j, r in enumerate(rows):
    axes[0, j].imshow(masked(train.y[r], train.mask[r]), cmap=gray, vmin=0, vmax=1)
    axes[1, j].imshow(image(filled[r]), cmap="gray", vmin=0, vmax=1)
    axes[2, j].imshow(image(train.y_true[r]), cmap="gray", vmin=0, vmax=1)
    axes[0, j].set_title(f"t={train.data['age'].iloc[r]}", fontsize=8)
for i, name in enumerate(["input", "imputed", "truth"]):
    axes[i, 0].set_ylabel(name, fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle(f"instance {label}", fontsize=9)
fig.tight_layout()
""",
    ),
    (
        "md",
        r"""
## Future prediction

For the test instances the model has seen only frames `t < 5`. `predict(test.data)` generates a
frame from the covariates alone, `g(M_f x* + E[u_p] w*)`: the fixed effects at the new age and
disease status, plus the instance's learned random intercept. Each strip below shows the truth,
the model's input (the masked training frames; nothing from `t = 5` on) and the prediction for
every frame; held-out frames are framed in red.

For scale, the baseline is the mean observed image of each age over the training frames, which
knows the population drift but nothing about the instance.
""",
    ),
    (
        "code",
        """
predicted = model.predict(test.data)
assert predicted.shape == test.y_true.shape and np.all(np.isfinite(predicted))

obs_sum = pd.DataFrame(train.y * train.mask).groupby(train.data["age"].to_numpy()).sum()
obs_count = pd.DataFrame(train.mask.astype(float)).groupby(train.data["age"].to_numpy()).sum()
age_mean = (obs_sum / obs_count.clip(lower=1)).reindex(test.data["age"].to_numpy()).to_numpy()
print(
    f"future-prediction MSE: model {((predicted - test.y_true) ** 2).mean():.4f}, "
    f"per-age mean image {((age_mean - test.y_true) ** 2).mean():.4f}"
)

held_out_ids = per_instance.loc[test.data["id"].unique()]
strips = [  # a diseased and a healthy test instance, where there are both
    *held_out_ids.index[held_out_ids.diseasePresence == 1][:1],
    *held_out_ids.index[held_out_ids.diseasePresence == 0][:1],
]
for label in strips:
    rows = np.flatnonzero(ds.data["id"].to_numpy() == label)  # every frame, train and test
    rows = rows[np.argsort(ds.data["age"].to_numpy()[rows])]
    frames_pred = model.predict(ds.data.iloc[rows])  # the same generation at every age
    held_out = ds.data["split"].to_numpy()[rows] == "test"
    fig, axes = plt.subplots(3, len(rows), figsize=(0.75 * len(rows), 2.6))
    for j, r in enumerate(rows):
        axes[0, j].imshow(image(ds.y_true[r]), cmap="gray", vmin=0, vmax=1)
        if not held_out[j]:
            axes[1, j].imshow(masked(ds.y[r], ds.mask[r]), cmap=gray, vmin=0, vmax=1)
        axes[2, j].imshow(image(frames_pred[j]), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(
            str(ds.data["age"].iloc[r]), fontsize=7, color="red" if held_out[j] else "black"
        )
        for ax in axes[:, j]:
            ax.set_xticks([])
            ax.set_yticks([])
            if held_out[j]:  # held-out frames framed in red
                for spine in ax.spines.values():
                    spine.set_color("red")
                    spine.set_linewidth(1.5)
        if held_out[j]:
            axes[1, j].axis("off")
    status = "diseased" if per_instance.loc[label, "diseasePresence"] else "healthy"
    for i, name in enumerate(["truth", "input", "predicted"]):
        axes[i, 0].set_ylabel(name, fontsize=7)
    fig.suptitle(f"{label} ({status}, digit {3 + 3 * per_instance.loc[label, 'sex']})", fontsize=9)
    fig.tight_layout(pad=0.2)
""",
    ),
    (
        "md",
        r"""
## What the effects do, decoded

The fixed effects act on the latent space, which is identified only up to the decoder, so a
single coefficient has no meaning on its own. What does have one is the population curve they
imply: `predict(..., unseen="prior")` on a new instance gives `g(M_f x*)`, the image the fixed
effects predict for a covariate combination with the random intercept at its prior mean. Below,
the two digits, healthy and diseased, across ages: the sex × age and disease terms at work.
""",
    ),
    (
        "code",
        """
ages = np.unique(np.linspace(0, n_times - 1, 6).round().astype(int))
mean_da, sd_da = float(ds.truth["diseaseAge_mean"]), float(ds.truth["diseaseAge_std"])
grid = pd.DataFrame(
    [
        {
            "id": "new",
            "age": a,
            "sex": s,
            "diseasePresence": d,
            "diseaseAge_z": d * ((a - 9) - mean_da) / sd_da,
            "location": 0,
        }
        for s in (0, 1)
        for d in (0, 1)
        for a in ages
    ]
)
population = model.predict(grid, unseen="prior")
assert population.shape == (len(grid), 36 * 36) and np.all(np.isfinite(population))

fig, axes = plt.subplots(4, len(ages), figsize=(1.1 * len(ages), 4.8))
for i, ((s, d), block) in enumerate(grid.groupby(["sex", "diseasePresence"], sort=False)):
    for j, r in enumerate(block.index):
        axes[i, j].imshow(image(population[r]), cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"age {ages[j]}", fontsize=8)
    axes[i, 0].set_ylabel(f"'{3 + 3 * s}'\\n{'diseased' if d else 'healthy'}", fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()
""",
    ),
    (
        "md",
        r"""
## The fixed effects in ArviZ

`effects()` draws the effects from the variational posterior q(A_f) q(u_p) and returns an
`arviz.InferenceData` (an `xarray.DataTree` on ArviZ >= 1.0); `fixed_effects` has dims
`(chain, draw, latent, term)` with the terms named from the formula, and
`pyro_lmmvae.arviz_compat` summarises and plots it the same way on both ArviZ lines. We show
the sex × age and disease terms, and the control term `location`, in the latent dimensions where
the disease terms are largest relative to their posterior sd.
""",
    ),
    (
        "code",
        """
idata = model.effects(num_draws=300)
fixed = idata.posterior["fixed_effects"]
print(fixed.coords["term"].values.tolist())
assert fixed.sizes["latent"] == latent_dim and fixed.sizes["term"] == 8
assert np.all(np.isfinite(fixed.values))

terms = [
    "sex",
    "sex:age",
    "diseasePresence",
    "diseaseAge_z",
    "diseasePresence:diseaseAge_z",
    "location",
]
disease = fixed.sel(term=["diseasePresence", "diseasePresence:diseaseAge_z"])
z_score = (abs(disease.mean(("chain", "draw"))) / disease.std(("chain", "draw"))).max("term")
latents = [int(v) for v in z_score.sortby(z_score, ascending=False).latent.values[:4]]
fig, ax = plt.subplots(figsize=(6, 7))
arviz_compat.plot_forest(
    idata,
    var_names=["fixed_effects"],
    coords={"term": terms, "latent": latents},
    hdi_prob=0.95,
    ax=ax,
)
ax.axvline(0, color="grey", lw=0.8)
ax.set_title("fixed effects (95% HDI), latent dims " + ", ".join(map(str, latents)));
""",
    ),
    (
        "code",
        """
summary = arviz_compat.summary(idata, var_names=["fixed_effects"], coords={"term": terms})
summary["|mean|/sd"] = summary["mean"].abs() / summary["sd"]
print("mean |posterior mean| / sd per term, over latent dims:")
term_of_row = summary.index.str.extract(r", (.*)\\]$", expand=False)
per_term = summary["|mean|/sd"].groupby(term_of_row).mean()
print(per_term.round(2).sort_values(ascending=False).to_string())
assert np.all(np.isfinite(summary["mean"]))
print(f"\\nnotebook wall time: {time.perf_counter() - started:.0f} s")
""",
    ),
    (
        "md",
        r"""
The sex and disease terms are large in several latent dimensions: together they move the
population frames above. `location` has no effect on the images, yet some of its coefficients
sit away from zero with narrow intervals. It is constant within an instance, so it competes with
the random intercepts: by chance the instances of the two locations differ a little in their
mean intercept, the fixed effect takes up that difference, and the mean-field posterior, which
ignores the correlation between fixed and random effects, reports it with too much confidence.
Read narrow intervals from q(A) as a fit diagnostic, not as calibrated evidence.
""",
    ),
    (
        "md",
        r"""
## Summary

* The LMM-VAE takes the longitudinal design of Health MNIST as an lme4 formula; the paper's
  networks are one argument (`network="health_mnist"`).
* `impute()` fills in missing pixels and leaves the observed ones as they were; `predict()`
  generates held-out future frames from covariates and the instance's random effect, and, with
  `unseen="prior"`, population frames for any covariate combination.
* `effects()` is an ArviZ object: forest plots and summaries of the fixed effects come for free.
  The latent coordinates are arbitrary (identified only up to the decoder), so read effects
  through what they decode to, or compare them through a map to a reference
  (`pyro_lmmvae.metrics.effect_recovery`).
* In the run stored here (200 instances, 60 epochs) the imputed pixels and the future frames
  are closer to the truth than the per-pixel and per-age mean images, but blurry; the paper
  trains 1,000 instances for hundreds of epochs. For the benchmark protocol see
  `python -m benchmarks.paper health_mnist --preset reduced` and BENCHMARKS.md.
""",
    ),
]


# ============================================================================================
# 05 GP connection
# ============================================================================================
GP_CONNECTION = [
    (
        "md",
        r"""
# 05 · Fourier features and the GP connection

A Gaussian-process prior over time is the classic way to model smooth longitudinal latents
(the GP-prior VAEs: GPPVAE, LVAE, SVGP-VAE). A GP with a stationary kernel `k(t − t')` can be
approximated by a **finite basis with a Gaussian prior on its coefficients** (Bochner's theorem):
with features `φ(t) = [cos ω_m t, sin ω_m t]`, `m = 1..M`, `ω_m = 2πm/T`, and coefficients
`a ~ N(0, diag Λ)`,

$$\operatorname{Cov}[a^\top \varphi(t),\, a^\top \varphi(t')]
= \varphi(t)^\top \Lambda\, \varphi(t')
= \sum_m \Lambda_m \cos \omega_m (t - t'),$$

which converges to `k` as `M` grows when `Λ_m = 2 S(ω_m) Δω` is read from the kernel's spectral
density `S`. In an LMM-VAE these features are ordinary columns of the formula
(`fourier(t, M)`), and a `SpectralPrior` gives their coefficients the `Λ` of a kernel: the model
is then a **reduced-rank GP-prior VAE**, at the cost of a linear mixed model.

This notebook (1) compares the implied kernels with the exact SE and Matérn-3/2 kernels for a
few `M`, (2) reads the same kernel off a model (`prior_kernel`), and (3) fits GP-prior synthetic
data with growing `M` (a notebook-sized version of `benchmarks/basis_sweep.py`).
""",
    ),
    ("parameters", PARAMETERS),
    (
        "code",
        """
%matplotlib inline
import time
import warnings

# tqdm warns in Jupyter without ipywidgets (the fits below show no progress bar anyway)
warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from pyro_lmmvae import LMMVAE, SpectralPrior
from pyro_lmmvae.datasets import make_gp_synthetic
from pyro_lmmvae.plots import plot_kernel, plot_trajectories
from pyro_lmmvae.spectral import Kernel, default_period, implied_kernel, regular_grid_scaling

started = time.perf_counter()
torch.manual_seed(0)
# One torch thread: for these small models it was 1.5-10x faster than two on the shared 2-core
# machine that ran this notebook (threads fight over the cores); try more on a dedicated machine.
torch.set_num_threads(1)

frequencies = [1, 4] if SMALL else [1, 2, 4, 8]  # M; the model has 2M basis columns
n_instances = 12 if SMALL else 60
n_times = 8 if SMALL else 20
epochs = 3 if SMALL else 200
print(f"SMALL={SMALL}: M in {frequencies}, P={n_instances}, {n_times} times, {epochs} epochs")
""",
    ),
    (
        "md",
        r"""
## 1. Implied kernels against exact kernels

`pyro_lmmvae.spectral` has the kernels (`Kernel`), their spectral densities and the grid scaling
(`regular_grid_scaling`). For a covariate observed on `[0, 10]` the library's default period is
`T = 2 (t_max − t_min) = 20` (twice the range, so that the implied kernel, which is periodic with
period `T`, does not wrap around within the data). The `ω_0 = 0` term contributes a constant
`q_0²`; in a model the intercept column plays that role.

Below: the kernel row `k(t, t' = 2)` over the data range for `M = 2, 4, 8, 16` frequencies
against the exact kernel, with lengthscale ℓ = 1.5. The SE spectrum decays fast, so a few
frequencies suffice; the rougher Matérn-3/2 needs more (its spectrum has heavy tails, and the
truncated sum misses the kink at `τ = 0`).
""",
    ),
    (
        "code",
        """
t = np.linspace(0.0, 10.0, 201)
t0 = 2.0
period = default_period(t)  # 20.0
kernels = {
    "SE": Kernel("se", variance=1.0, lengthscale=1.5),
    "Matérn-3/2": Kernel("matern32", variance=1.0, lengthscale=1.5),
}
errors = {}
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, (name, kernel) in zip(axes, kernels.items()):
    ax.plot(t, kernel(t - t0), color="black", lw=2.5, label="exact")
    for m in (2, 4, 8, 16):
        scaling = regular_grid_scaling(kernel, m, period=period)
        row = implied_kernel(t - t0, scaling)
        errors[name, m] = float(np.max(np.abs(row - kernel(t - t0))))
        ax.plot(t, row, lw=1.2, label=f"M = {m}")
    ax.set_title(f"{name}, ℓ = 1.5: k(t, t' = {t0})")
    ax.set_xlabel("t")
axes[0].set_ylabel("covariance")
axes[1].legend()
fig.tight_layout()

table = pd.Series(errors).unstack().round(4)
table.columns = [f"M = {m}" for m in table.columns]
print("max |implied - exact| over t in [0, 10]:")
print(table.to_string())
for name in kernels:
    assert errors[name, 16] < errors[name, 2]  # more frequencies, closer to the kernel
assert errors["SE", 16] < 1e-3
""",
    ),
    (
        "md",
        r"""
## 2. The kernel a model implies

In a formula, `fourier(t, M)` adds the 2M columns `[cos ω_m t, sin ω_m t]`; `fixed_prior=`
chooses the prior on the fixed effects. A `SpectralPrior` (or the short form
`fixed_prior="se"`, `"matern32"`, ...) puts `N(0, Λ_m)` on the basis columns and `N(0, 1)` on the
others; each basis term's variance and lengthscale are fixed or learned (`learn=`).

`model.prior_kernel(term, t)` integrates the term's coefficients out of the model's own prior:
it is `φ(t)ᵀ Λ φ(t')`, without the constant `q_0²` (so its rows level off at `−q_0²`, about
−0.19 here, rather than at 0). It needs no training. Below it agrees with the spectral formula
above, and `plot_kernel` draws it; the short form with its defaults (variance 1, ℓ = T/8 = 2.5)
gives a smoother kernel.
""",
    ),
    (
        "code",
        """
gp = make_gp_synthetic(
    n_instances=n_instances,
    n_times=n_times,
    kernel=kernels["SE"],
    n_test_times=min(4, n_times - 2),
    seed=0,
)
gp_train, gp_val, gp_test = gp.split("train"), gp.split("val"), gp.split("test")

M = 8
se_model = LMMVAE(
    f"~ 1 + t + fourier(t, {M}) + (1 | id)",
    data=gp_train.data,
    y=gp_train.y,
    mask=gp_train.mask,
    latent_dim=2,
    fixed_prior=SpectralPrior(kernels["SE"]),
)
grid = np.linspace(0.0, 10.0, 60)
K_model = se_model.prior_kernel(f"fourier(t, {M})", grid)
scaling = regular_grid_scaling(kernels["SE"], M, period=default_period(gp_train.data["t"]))
K_spectral = implied_kernel(grid[:, None] - grid[None, :], scaling) - scaling.intercept_variance
print(f"period of the basis: {default_period(gp_train.data['t']):.2f}")
print(f"max |prior_kernel - spectral formula| = {np.max(np.abs(K_model - K_spectral)):.2e}")
assert K_model.shape == (60, 60) and np.allclose(K_model, K_spectral, atol=1e-5)

plot_kernel(K_model, grid, title=f"prior_kernel('fourier(t, {M})'), SE ℓ = 1.5")
""",
    ),
    (
        "code",
        """
short = LMMVAE(
    f"~ 1 + t + fourier(t, {M}) + (1 | id)",
    data=gp_train.data,
    y=gp_train.y,
    mask=gp_train.mask,
    latent_dim=2,
    fixed_prior="se",  # SpectralPrior("se"): variance 1, lengthscale T/8
)
print(short.model.effects.fixed_prior.describe())
plot_kernel(short.prior_kernel(f"fourier(t, {M})", grid), grid, title='fixed_prior="se"')
""",
    ),
    (
        "md",
        r"""
## 3. GP-prior data and the number of basis functions

`make_gp_synthetic` draws each latent dimension's population trajectory from
`GP(0, SE(σ² = 1, ℓ = 1.5))` on `t ∈ [0, 10]`, adds a random intercept per instance and decodes
through a random MLP to 12 outputs with noise and 10% missing entries. Each instance is observed
at its own random times; 30% of the instances have their last 4 time points held out (future
prediction).
""",
    ),
    (
        "code",
        """
truth_t, truth_f = gp.truth["grid_t"], gp.truth["population_z"]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
for dim in range(truth_f.shape[1]):
    axes[0].plot(truth_t, truth_f[:, dim], label=f"latent {dim}")
axes[0].set_title("true population trajectories f(t) ~ GP")
axes[0].set_xlabel("t")
axes[0].legend()
for label in gp.data["id"].unique()[:3]:
    rows = (gp.data["id"] == label).to_numpy()
    axes[1].plot(gp.data["t"][rows], gp.y_true[rows, 0], "o-", ms=3, label=label)
axes[1].set_title("output 0 of three instances")
axes[1].set_xlabel("t")
axes[1].legend()
fig.tight_layout()
print(gp.data["split"].value_counts().to_dict())
assert gp_train.y.shape[1] == 12 and np.all(gp_train.y[~gp_train.mask] == 0)
""",
    ),
    (
        "md",
        r"""
We fit `~ 1 + t + fourier(t, M) + (1 | id)` with L = 2 for several `M`, with unscaled `N(0, 1)`
coefficients and with the SE spectral prior of the data's own kernel, and record

* the **test MSE** of future prediction (`predict(test.data)`), and
* the **trajectory R²**: the learned population curve `M_f x(t)` on the dense grid
  (`prior_latents(grid, unseen="prior")`), mapped affinely onto the true `f(t)` (the latent space
  is identified only up to such a map).

`benchmarks/basis_sweep.py` runs the same sweep with 3 seeds and 200 epochs (BENCHMARKS.md).
""",
    ),
    (
        "code",
        """
def r_squared(learned, truth):
    design = np.column_stack([np.ones(len(learned)), learned])
    coef, *_ = np.linalg.lstsq(design, truth, rcond=None)
    residual = ((design @ coef - truth) ** 2).sum(0)
    return float(np.mean(1.0 - residual / ((truth - truth.mean(0)) ** 2).sum(0))), design @ coef


population_grid = pd.DataFrame({"t": truth_t, "id": "unseen"})
priors = {"N(0, 1)": lambda: None, "SE spectral": lambda: SpectralPrior(kernels["SE"])}
results, curves, models = [], {}, {}
for m in frequencies:
    for prior_name, prior in priors.items():
        fit_started = time.perf_counter()
        fitted = LMMVAE(
            f"~ 1 + t + fourier(t, {m}) + (1 | id)",
            data=gp_train.data,
            y=gp_train.y,
            mask=gp_train.mask,
            latent_dim=2,
            fixed_prior=prior(),
            seed=0,
        )
        fitted.fit(max_epochs=epochs, batch_size=10, lr=3e-3, validation=None, progress=False)
        loss = fitted.history.train_loss
        assert np.all(np.isfinite(loss)) and loss[-1] < loss[0]
        pred = fitted.predict(gp_test.data)
        assert pred.shape == gp_test.y_true.shape and np.all(np.isfinite(pred))
        r2, mapped = r_squared(fitted.prior_latents(population_grid, unseen="prior"), truth_f)
        curves[m, prior_name], models[m, prior_name] = mapped, fitted
        results.append(
            {
                "2M": 2 * m,
                "prior": prior_name,
                "test MSE": float(((pred - gp_test.y_true) ** 2).mean()),
                "trajectory R²": r2,
                "seconds": time.perf_counter() - fit_started,
            }
        )
results = pd.DataFrame(results)
results.round(4)
""",
    ),
    (
        "code",
        """
fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
for prior_name, block in results.groupby("prior"):
    axes[0].plot(block["2M"], block["test MSE"], "o-", label=prior_name)
    axes[1].plot(block["2M"], block["trajectory R²"], "o-", label=prior_name)
for ax, name in zip(axes, ["test MSE (future prediction)", "trajectory R²"]):
    ax.set_xscale("log", base=2)
    ax.set_xticks(2 * np.array(frequencies), [str(2 * m) for m in frequencies])
    ax.set_xlabel("2M (basis columns)")
    ax.set_title(name)
axes[0].legend()
fig.tight_layout()

fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
for dim, ax in enumerate(axes):
    ax.plot(truth_t, truth_f[:, dim], color="black", lw=2.5, label="true f(t)")
    for m in (frequencies[0], frequencies[-1]):
        ax.plot(truth_t, curves[m, "N(0, 1)"][:, dim], lw=1.3, label=f"learned, 2M = {2 * m}")
    ax.set_title(f"latent {dim}: population curve, mapped to the truth")
    ax.set_xlabel("t")
axes[0].legend(fontsize=8)
fig.tight_layout()
""",
    ),
    (
        "md",
        r"""
## Prior and posterior trajectories

`latent_trajectories(grid)` evaluates the latent linear predictor along a covariate grid under
the prior p(A) and under the variational posterior q(A); without an instance column it is the
population curve. With the SE spectral prior, the prior draws are (reduced-rank) GP draws plus a
linear trend and an intercept; the posterior narrows them around what the data say.
""",
    ),
    (
        "code",
        """
smooth = models[frequencies[-1], "SE spectral"]
traj = smooth.latent_trajectories(pd.DataFrame({"t": np.linspace(0, 10, 80)}), num_draws=20)
assert traj["posterior_mean"].shape == (80, 2) and np.all(np.isfinite(traj["prior_draws"]))
hyper = smooth.effects(num_draws=50).posterior.attrs["fixed_prior_hyperparameters"]
print("kernel hyper-parameters of the basis term:", hyper)
plot_trajectories(traj, "t")
""",
    ),
    (
        "code",
        """
print(f"notebook wall time: {time.perf_counter() - started:.0f} s")
""",
    ),
    (
        "md",
        r"""
## Summary

* `fourier(t, M)` in a formula plus a `SpectralPrior` is a reduced-rank GP prior:
  `prior_kernel` shows the implied kernel, which approaches the exact one as `M` grows (fast for
  SE, slowly for Matérn-3/2).
* On GP-prior data the test MSE falls and the learned population curve approaches the true GP
  draw as basis functions are added.
* The spectral scaling is what makes the model a GP approximation (kernel, prior draws); in the
  benchmark (BENCHMARKS.md, 3 seeds) it does not predict better than unscaled `N(0, 1)` columns
  on these data, and in the run stored here (one seed, 200 epochs) it is as good up to 2M = 8 and
  worse at 2M = 16: it shrinks the high-frequency coefficients, which need not be small in the
  learned latent space (an affine image of the true one).
""",
    ),
]


# ============================================================================================
# 06 PhysioNet
# ============================================================================================
PHYSIONET = [
    (
        "md",
        r"""
# 06 · PhysioNet 2012: ICU trajectories and per-patient random effects

The PhysioNet/Computing in Cardiology Challenge 2012 records the first 48 hours of adult ICU
stays: 37 time-varying variables (heart rate, blood pressures, temperature, lab values, ...)
measured at irregular times, most of them rarely. The loader bins them by hour, so each patient
is a short sequence of 37-dimensional rows with about 80% of the entries missing.

The LMM-VAE treats the patient as the instance: its latent prior has population effects of
time, age, gender, ICU type and in-hospital death, and a **per-patient random intercept and
slope in time**. We fit it with the paper's PhysioNet network, predict the last 12 hours of
held-out patients from their first 36, and look at the random effects in ArviZ.

**Reduced training.** The paper trains on all 3,951 kept patients of set A with L = 8 for up to
500 epochs; here the same data and latent size, but 80 epochs (about 1.5 minutes of training on
one CPU thread). `SMALL` mode (CI) reads a handful of records and trains 3 epochs.
""",
    ),
    ("parameters", PARAMETERS),
    (
        "code",
        """
%matplotlib inline
import time
import warnings
from pathlib import Path

# tqdm warns in Jupyter without ipywidgets (the fits below show no progress bar anyway)
warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from pyro_lmmvae import LMMVAE, arviz_compat
from pyro_lmmvae.datasets import load_physionet

started = time.perf_counter()
torch.manual_seed(0)
# One torch thread: for these small models it was 1.5-10x faster than two on the shared 2-core
# machine that ran this notebook (threads fight over the cores); try more on a dedicated machine.
torch.set_num_threads(1)

n_records = 12 if SMALL else None  # records read from the archive; None: all 4,000
latent_dim = 4 if SMALL else 8  # paper: 8
epochs = 3 if SMALL else 80  # paper: up to 500
n_frequencies = 4  # fourier(t, 4): 2M = 8 basis columns, the benchmark's main setting
print(f"SMALL={SMALL}: {n_records or 'all'} records, L={latent_dim}, {epochs} epochs")
""",
    ),
    (
        "md",
        r"""
## The data

`load_physionet(root)` reads `set-a.tar.gz` and `Outcomes-a.txt` from `root` (placed there by
hand; nothing is downloaded). `patients=` reads only the first records of the archive, and
`cache="physionet.npz"` would store the processed dataset once and reload it while the options
match (we skip it here, so the notebook leaves no files behind).

Each row is one patient-hour: covariates `id`, `t` (hour 0..47), `age`, `gender`, `icu_type`
(a string, so formulas one-hot encode it) and `death`; `y` holds the 37 variables standardised
with the training mean and sd (0 where unobserved) and `mask` the observed entries. Patients
with fewer than 10 observed hours are dropped; 20% of the others are **test patients** whose rows
from hour 36 on are held out.
""",
    ),
    (
        "code",
        """
root = Path(DATA_ROOT) / "physionet2012"  # the shared data's layout
if not root.exists():
    root = Path(DATA_ROOT) / "physionet"
ds = load_physionet(root, patients=n_records, seed=0)
train, val, test = ds.split("train"), ds.split("val"), ds.split("test")
variables = list(ds.truth["variables"])
mean, sd = ds.truth["variable_mean"], ds.truth["variable_std"]
print(f"{ds.n_instances} patients, {ds.n_obs} patient-hours, {len(variables)} variables")
print(ds.data["split"].value_counts().to_dict())
print(f"observed entries: {ds.mask.mean():.1%}")

assert ds.y.shape == (len(ds.data), 37) and ds.mask.shape == ds.y.shape
assert np.all(ds.y[~ds.mask] == 0) and ds.mask.any(axis=1).all()
assert test.data["t"].min() >= 36 and len(test.data) > 0
ds.data.head()
""",
    ),
    (
        "code",
        """
observed = pd.Series(ds.mask.mean(0), index=variables).sort_values(ascending=False)
fig, ax = plt.subplots(figsize=(10, 2.8))
observed.plot.bar(ax=ax, color="C0")
ax.set_ylabel("fraction of patient-hours")
ax.set_title("how often each variable is measured");
""",
    ),
    (
        "md",
        r"""
## The model

The formula is the benchmark's default design (`benchmarks/paper/configs/physionet.toml`): a
smooth population curve in time (`t + fourier(t, 4)`), patient covariates, a different time
trend for patients who died (`death + death:t`) and the per-patient random intercept and slope
`(1 + t | id)`. `t` and `age` are z-scored by the design (`standardize=["t", "age"]`); the
Fourier basis reads `t` in hours.

`network="physionet"` is the paper's MLP (Table 11); the Gaussian likelihood is evaluated on the
observed entries only. As in the benchmark, the random effects get their own learning rate
(`local_lr`).
""",
    ),
    (
        "code",
        """
formula = (
    f"~ 1 + t + fourier(t, {n_frequencies}) + age + gender + icu_type + death + death:t"
    " + (1 + t | id)"
)
model = LMMVAE(
    formula,
    data=train.data,
    y=train.y,
    mask=train.mask,
    latent_dim=latent_dim,
    network="physionet",
    standardize=["t", "age"],
    seed=0,
)
fit_started = time.perf_counter()
model.fit(
    max_epochs=epochs,
    batch_size=32,
    lr=3e-3,
    local_lr=1e-2,
    validation=(val.data, val.y, val.mask),
    progress=False,
)
print(f"fit: {time.perf_counter() - fit_started:.0f} s, best epoch {model.history.best_epoch}")

history = model.history
assert len(history.train_loss) == epochs and np.all(np.isfinite(history.train_loss))
assert history.train_loss[-1] < history.train_loss[0]

fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(history.train_loss, label="training")
ax.plot(history.val_loss, label="validation")
ax.set_xlabel("epoch")
ax.set_ylabel("negative ELBO per row")
ax.legend();
""",
    ),
    (
        "md",
        r"""
In the run stored here the training loss spikes for one epoch (around epoch 60); the validation
objective hardly moves and training recovers in the next epoch (`fit` keeps the weights of the
best validation epoch in any case). Clipping gradient norms (`fit(clip_norm=10)`) did not remove
such spikes in a trial run.

## Future prediction

`predict(test.data)` generates the held-out hours (t ≥ 36) from the covariates and each test
patient's random effects, learned from its first 36 hours: `g(M_f x* + E[u_p] w*)`. The error is
measured on the observed entries, in standardised units. Two baselines: the training mean of
every variable (0 in standardised units) and the patient's own mean over its first 36 hours
(the training mean where the patient has none).
""",
    ),
    (
        "code",
        """
predicted = model.predict(test.data)
assert predicted.shape == test.y.shape and np.all(np.isfinite(predicted))

observed_train = pd.DataFrame(np.where(train.mask, train.y, np.nan))
patient_mean = observed_train.groupby(train.data["id"].to_numpy()).mean()
patient_baseline = patient_mean.reindex(test.data["id"].to_numpy()).fillna(0.0).to_numpy()


def mse(prediction):
    return float(((prediction - test.y)[test.mask] ** 2).mean())


scores = pd.Series(
    {
        "LMM-VAE": mse(predicted),
        "population mean (0)": mse(np.zeros_like(test.y)),
        "patient's own mean": mse(patient_baseline),
    },
    name="MSE, t >= 36 h",
)
scores.round(4).to_frame()
""",
    ),
    (
        "md",
        r"""
### Predicted vs observed vitals

For a few test patients: the observed values (dots; grey before 36 h, which the model saw,
red after, which it did not) and the model's curve over all 48 hours, obtained by predicting on
an hourly grid with the patient's covariates. Values are back in raw units
(`y * variable_std + variable_mean`).
""",
    ),
    (
        "code",
        """
preferred = ["HR", "MAP", "Temp", "GCS", "SysABP", "RespRate", "Glucose", "Urine"]
test_rows = test.data.assign(n=test.mask.sum(1)).groupby("id")["n"].sum()
patients = list(test_rows.sort_values(ascending=False).index[:3])
covariates = ["id", "age", "gender", "icu_type", "death"]
hours = np.arange(48.0)

fig, axes = plt.subplots(len(patients), 4, figsize=(13, 2.6 * len(patients)), squeeze=False)
for i, pid in enumerate(patients):
    rows = np.flatnonzero(ds.data["id"].to_numpy() == pid)
    seen = ds.mask[rows].any(0)
    names = [v for v in preferred if seen[variables.index(v)]]
    names += [v for v in observed.index if seen[variables.index(v)] and v not in names]
    grid = pd.concat([ds.data.iloc[[rows[0]]][covariates]] * len(hours), ignore_index=True)
    grid["t"] = hours
    curve = model.predict(grid) * sd + mean
    assert curve.shape == (48, 37) and np.all(np.isfinite(curve))
    t_rows = ds.data["t"].to_numpy()[rows]
    for j, ax in enumerate(axes[i]):
        if j >= len(names):
            ax.axis("off")
            continue
        d = variables.index(names[j])
        obs = ds.mask[rows, d]
        raw = ds.y[rows, d] * sd[d] + mean[d]
        before = obs & (t_rows < 36)
        after = obs & (t_rows >= 36)
        ax.plot(hours, curve[:, d], color="C0", lw=1.8, label="predicted")
        ax.plot(t_rows[before], raw[before], "o", color="grey", ms=3.5, label="observed, seen")
        ax.plot(t_rows[after], raw[after], "o", color="C3", ms=3.5, label="observed, held out")
        ax.axvline(36, color="black", lw=0.8, ls=":")
        ax.set_title(f"patient {pid}: {names[j]}", fontsize=9)
        ax.set_xlabel("hour")
axes[0, 0].legend(fontsize=7)
fig.tight_layout()
""",
    ),
    (
        "md",
        r"""
## Per-patient random effects

`effects()` returns the posterior draws of the fixed effects and of the random effects,
`random_effects` with dims `(chain, draw, latent, group, random_term)`: one intercept and one
slope in (z-scored) time per patient and latent dimension. A forest plot shows them for the
patients above; a scatter of the posterior means over all training patients shows how much the
patients differ, and whether the patients who died sit elsewhere (their population difference
is in the fixed `death` terms, so the random effects need not separate them).
""",
    ),
    (
        "code",
        """
idata = model.effects(num_draws=200)
random = idata.posterior["random_effects"]
print(dict(random.sizes))
assert random.sizes["group"] == train.data["id"].nunique()
assert list(random.coords["random_term"].values) == ["1|id", "t|id"]
assert np.all(np.isfinite(random.values))

spread = random.mean(("chain", "draw")).std("group").sum("random_term")
top = [int(v) for v in spread.sortby(spread, ascending=False).latent.values[:2]]
fig, ax = plt.subplots(figsize=(6, 1.0 + 0.5 * len(patients) * 2 * len(top)))
arviz_compat.plot_forest(
    idata,
    var_names=["random_effects"],
    coords={"group": patients, "latent": top},
    hdi_prob=0.95,
    ax=ax,
)
ax.axvline(0, color="grey", lw=0.8)
ax.set_title(f"random effects (95% HDI), latent dims {top}");
""",
    ),
    (
        "code",
        """
post_mean = random.mean(("chain", "draw"))
died = ds.data.groupby("id")["death"].first().reindex(post_mean.coords["group"].values).to_numpy()
fig, axes = plt.subplots(1, len(top), figsize=(5 * len(top), 3.8), squeeze=False)
for ax, dim in zip(axes[0], top):
    b0 = post_mean.sel(latent=dim, random_term="1|id").values
    b1 = post_mean.sel(latent=dim, random_term="t|id").values
    ax.scatter(b0[died == 0], b1[died == 0], s=8, alpha=0.6, label="survived")
    ax.scatter(b0[died == 1], b1[died == 1], s=8, alpha=0.8, color="C3", label="died")
    ax.set_xlabel("random intercept (posterior mean)")
    ax.set_ylabel("random slope in t")
    ax.set_title(f"latent {dim}, one dot per patient")
axes[0, 0].legend()
fig.tight_layout()

fixed_summary = arviz_compat.summary(
    idata, var_names=["fixed_effects"], coords={"term": ["death", "death:t"]}
)
print(fixed_summary.round(3).to_string())
print(f"\\nnotebook wall time: {time.perf_counter() - started:.0f} s")
""",
    ),
    (
        "md",
        r"""
## Summary

* `load_physionet` turns the raw challenge archive into hourly rows with a mask; the formula
  gives each patient its own intercept and time slope in the latent space.
* `predict` extrapolates a patient's vitals past the hours it was trained on, and the same call on
  an hourly grid draws its whole trajectory.
* `effects()` exposes the per-patient random effects as ArviZ draws.
* In the run stored here (all patients, 80 epochs) the LMM-VAE predicts the last 12 hours much
  better than the population mean but worse than the patient's own mean over its first 36 hours,
  a baseline the benchmark tables do not include: for most variables a patient's level carries
  much of the signal over the next 12 hours. BENCHMARKS.md (PhysioNet section, the first 1,200
  records) compares the variants; there the sLMM-VAE, whose per-patient offset is pooled from
  all of the patient's rows, predicted best with the spec's optimiser
  (`python -m benchmarks.paper physionet --preset reduced`).
""",
    ),
]


NOTEBOOKS = {
    "04_health_mnist.ipynb": ("hm", HEALTH_MNIST),
    "05_gp_connection.ipynb": ("gp", GP_CONNECTION),
    "06_physionet.ipynb": ("pn", PHYSIONET),
}


def main(names: list[str]) -> None:
    for name, (prefix, cells) in NOTEBOOKS.items():
        if names and not any(n in name for n in names):
            continue
        path = HERE / name
        nbformat.validate(nb := notebook(prefix, cells))
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main(sys.argv[1:])
