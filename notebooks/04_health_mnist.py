# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Health MNIST: imputation, future prediction and readable effects
#
# The main experiment of the LMM-VAE paper (Ong, Haußmann, Lönnroth, Lähdesmäki, 2024), at a size
# that runs on a laptop CPU in a few minutes. Health MNIST (the LVAE paper's generator) turns each
# MNIST '3' or '6' into a **patient** followed over time:
#
# * `sex` is the digit ('3' = 0, '6' = 1), `age` the time point `t = 0..19`;
# * the digit drifts diagonally with age (a shift of `t/10` pixels), and half of the patients are
#   **diseased**: from age about 9 on their digit rotates by up to 45°
#   (`diseasePresence`, `diseaseAge = t - 9`);
# * `location` is a nuisance covariate with no effect on the image;
# * a quarter of the pixels of every frame is missing at random.
#
# We fit an oLMM-VAE whose latent prior is the richest covariate set of the paper's benchmark
# (`benchmarks/paper/configs/health_mnist.toml`, set (iii)), with the paper's convolutional
# networks (`network="health_mnist"`), then look at imputations, future predictions and the fixed
# effects of sex × age and disease.
#
# **Reduced sizes.** The paper uses 1,000 patients, latent sizes 16 and 32 and up to 500 epochs;
# here 200 patients, L = 16 and 60 epochs (about 2.5 minutes of training on one CPU thread), so
# the numbers below are those of a short run, not the paper's. `SMALL` mode (CI) shrinks everything
# further and only checks that every step runs.

# %% tags=["parameters"]
import os

SMALL = os.environ.get("PYRO_LMMVAE_NOTEBOOK_SMALL") == "1"  # CI: tiny sizes, few epochs
DATA_ROOT = os.environ.get("PYRO_LMMVAE_DATA", "../../shared/data")  # real-data notebooks

# %%
# %matplotlib inline
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

# %% [markdown]
# ## The data
#
# `make_health_mnist` reads the raw MNIST training files from `DATA_ROOT/mnist` (nothing is
# downloaded) and returns a `LongitudinalDataset`: a covariate table with one row per frame,
# the masked images `y` (36 × 36 = 1,296 pixels, 0 where missing), the `mask` of observed pixels
# and the complete images `y_true`. `balanced=True` makes exactly half of each digit diseased.
#
# The split follows the paper: 10% of the instances are **test instances** whose frames from
# `t = 5` on are held out (future prediction); their first five frames and all frames of the other
# instances are split 80/20 into training and validation rows.

# %%
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


# %% [markdown]
# Two instances over time: the complete frames and what the model is given (missing pixels in
# blue). The diseased one starts to rotate around `t = 9`.


# %%
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
    axes[2 * k, 0].set_ylabel(f"{label}\n{status}\ntruth", fontsize=8)
    axes[2 * k + 1, 0].set_ylabel("input", fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %% [markdown]
# ## The model
#
# The latent prior is a linear mixed model written as an lme4 formula. Covariate set (iii) of the
# benchmark configuration, plus the per-instance random intercept `(1 | id)`:
#
# * `sex:age` lets the two digits age differently;
# * `diseasePresence + diseaseAge_z + diseasePresence:diseaseAge_z` describe the disease: an offset
#   and a slope in the (z-scored) time since disease onset, for diseased instances only
#   (`diseaseAge_z` is the dataset's own scaling on diseased training rows; `age` is z-scored by
#   the design, `standardize=["age"]`);
# * `location` has no effect on the images: a control term.
#
# `network="health_mnist"` picks the paper's convolutional encoder and decoder (Table 9). As in the
# benchmark harness, the pixels get a fixed Gaussian noise sd of 0.1 (`noise_scale`) and the
# per-instance random effects their own learning rate (`local_lr`): each instance is in one batch
# per epoch, so with the global learning rate they would barely move in a short run. A small
# batch (4 instances, about 60 frames) gives more optimiser steps per epoch on this small dataset.
#
# With a pixel noise sd of 0.1 the Gaussian log density of a well reconstructed pixel is positive,
# so the negative ELBO drops below zero as the fit improves. In the run stored here it first sits
# on a plateau for about 20 epochs; a trial run stopped at 25 epochs predicted the future frames
# no better than the per-age mean image (MSE 0.038 against 0.039).

# %%
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
ax.legend()
# %% [markdown]
# ## Imputation
#
# `impute()` encodes each training frame from its observed pixels and decodes it,
# `g(μ_φ(ỹ_i))`; with the default `keep_observed=True` the observed pixels are kept as they were
# and only the missing ones are filled in. We compare the filled-in pixels with the truth, and
# with the simplest imputer, the mean of each pixel over the observed training frames.

# %%
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

# %% [markdown]
# ## Future prediction
#
# For the test instances the model has seen only frames `t < 5`. `predict(test.data)` generates a
# frame from the covariates alone, `g(M_f x* + E[u_p] w*)`: the fixed effects at the new age and
# disease status, plus the instance's learned random intercept. Each strip below shows the truth,
# the model's input (the masked training frames; nothing from `t = 5` on) and the prediction for
# every frame; held-out frames are framed in red.
#
# For scale, the baseline is the mean observed image of each age over the training frames, which
# knows the population drift but nothing about the instance.

# %%
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

# %% [markdown]
# ## What the effects do, decoded
#
# The fixed effects act on the latent space, which is identified only up to the decoder, so a
# single coefficient has no meaning on its own. What does have one is the population curve they
# imply: `predict(..., unseen="prior")` on a new instance gives `g(M_f x*)`, the image the fixed
# effects predict for a covariate combination with the random intercept at its prior mean. Below,
# the two digits, healthy and diseased, across ages: the sex × age and disease terms at work.

# %%
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
    axes[i, 0].set_ylabel(f"'{3 + 3 * s}'\n{'diseased' if d else 'healthy'}", fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
fig.tight_layout()

# %% [markdown]
# ## The fixed effects in ArviZ
#
# `effects()` draws the effects from the variational posterior q(A_f) q(u_p) and returns an
# `arviz.InferenceData` (an `xarray.DataTree` on ArviZ >= 1.0); `fixed_effects` has dims
# `(chain, draw, latent, term)` with the terms named from the formula, and
# `pyro_lmmvae.arviz_compat` summarises and plots it the same way on both ArviZ lines. We show
# the sex × age and disease terms, and the control term `location`, in the latent dimensions where
# the disease terms are largest relative to their posterior sd.

# %%
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
ax.set_title("fixed effects (95% HDI), latent dims " + ", ".join(map(str, latents)))
# %%
summary = arviz_compat.summary(idata, var_names=["fixed_effects"], coords={"term": terms})
summary["|mean|/sd"] = summary["mean"].abs() / summary["sd"]
print("mean |posterior mean| / sd per term, over latent dims:")
term_of_row = summary.index.str.extract(r", (.*)\]$", expand=False)
per_term = summary["|mean|/sd"].groupby(term_of_row).mean()
print(per_term.round(2).sort_values(ascending=False).to_string())
assert np.all(np.isfinite(summary["mean"]))
print(f"\nnotebook wall time: {time.perf_counter() - started:.0f} s")

# %% [markdown]
# The sex and disease terms are large in several latent dimensions: together they move the
# population frames above. `location` has no effect on the images, yet some of its coefficients
# sit away from zero with narrow intervals. It is constant within an instance, so it competes with
# the random intercepts: by chance the instances of the two locations differ a little in their
# mean intercept, the fixed effect takes up that difference, and the mean-field posterior, which
# ignores the correlation between fixed and random effects, reports it with too much confidence.
# Read narrow intervals from q(A) as a fit diagnostic, not as calibrated evidence.

# %% [markdown]
# ## Summary
#
# * The LMM-VAE takes the longitudinal design of Health MNIST as an lme4 formula; the paper's
#   networks are one argument (`network="health_mnist"`).
# * `impute()` fills in missing pixels and leaves the observed ones as they were; `predict()`
#   generates held-out future frames from covariates and the instance's random effect, and, with
#   `unseen="prior"`, population frames for any covariate combination.
# * `effects()` is an ArviZ object: forest plots and summaries of the fixed effects come for free.
#   The latent coordinates are arbitrary (identified only up to the decoder), so read effects
#   through what they decode to, or compare them through a map to a reference
#   (`pyro_lmmvae.metrics.effect_recovery`).
# * In the run stored here (200 instances, 60 epochs) the imputed pixels and the future frames
#   are closer to the truth than the per-pixel and per-age mean images, but blurry; the paper
#   trains 1,000 instances for hundreds of epochs. For the benchmark protocol see
#   `python -m benchmarks.paper health_mnist --preset reduced` and BENCHMARKS.md.
