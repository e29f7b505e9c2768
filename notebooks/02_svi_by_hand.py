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
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Driving the model with Pyro by hand
#
# `LMMVAE.fit` wraps a plain torch training loop. Underneath, `m.model` and `m.guide` are ordinary
# Pyro callables that take one argument, a `Batch` of whole instances, so everything in
# `pyro.infer` works on them. This notebook:
#
# 1. looks inside a batch and traces the model and the guide (sample sites, plates, shapes),
# 2. trains with `pyro.infer.SVI(model, guide, pyro.optim.Adam, TraceMeanField_ELBO())` in a plain
#    `svi.step(batch)` loop, with a live ELBO plot,
# 3. inspects Pyro's parameter store and the modules' parameters,
# 4. draws from the posterior predictive with `pyro.infer.Predictive` (and shows the one thing
#    that needs care: the observed site),
# 5. trains the same model with the library's own loss module, `m.loss_module(kl=...)`, in a
#    hand-written torch loop, and compares.

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
import pyro
import torch
from IPython.display import display
from matplotlib.figure import Figure
from pyro import poutine
from pyro.infer import SVI, Predictive, TraceMeanField_ELBO
from pyro.poutine.util import site_is_subsample

from pyro_lmmvae import LMMVAE, arviz_compat, metrics
from pyro_lmmvae.datasets import make_synthetic

if SMALL:
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest on small CI machines

n_instances = 20 if SMALL else 200
epochs = 3 if SMALL else 300
batch_size = 32
lr = 1e-2

# %% [markdown]
# ## 1 · Data, model and a batch
#
# The same synthetic data and formula as in the quickstart. `build()` makes a fresh, untrained
# estimator; every model in this notebook starts from the same initial weights (`seed=0`).

# %%
ds = make_synthetic(n_instances=n_instances, seed=0)
train, test = ds.split("train"), ds.split("test")
formula = "~ 1 + t + g + c + g:t + fourier(t, 1, period=1) + (1 + t | id)"


def build() -> LMMVAE:
    return LMMVAE(
        formula,
        data=train.data,
        y=train.y,
        mask=train.mask,
        latent_dim=4,
        standardize=False,
        seed=0,
    )


m = build()
n_rows = train.n_obs
m

# %% [markdown]
# `m.batches(batch_size, seed)` iterates over one epoch of batches of `batch_size` whole
# instances (every training row of each). A `Batch` holds the fixed- and random-effect design rows
# `x` and `w`, the observations `y` with their `mask`, the global indices of its `instances`, each
# row's position `local` in that list, and `scale` = P / B, the factor that makes the per-instance
# terms of the ELBO unbiased for the whole data set.

# %%
batch = next(iter(m.batches(batch_size=4, seed=0)))
print(
    {
        name: tuple(getattr(batch, name).shape)
        for name in ("x", "w", "y", "mask", "instances", "local")
    }
)
print("instances:", m.design.groups[batch.instances.numpy()], " scale P/B =", batch.scale)
assert batch.x.shape == (batch.n_rows, len(m.design.fixed_terms))
assert batch.scale == m.design.n_groups / 4


# %% [markdown]
# Tracing one run of the model and of the guide shows the sample sites: the effects
# `fixed_effects` (in a `latent` plate) and `random_effects` (in a subsampled `instances` plate:
# only the batch's instances are drawn), the latents `z` and the observations `y` (in the `obs`
# plate of the batch's rows). The guide has a matching site for every latent site of the model,
# with a Normal distribution: this is what `TraceMeanField_ELBO` needs.


# %%
def sites(trace):
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue  # skip the plates' own bookkeeping sites
        fn = site["fn"]
        base = getattr(fn, "base_dist", fn)
        out[name] = {
            "distribution": type(base).__name__,
            "batch_shape": tuple(fn.batch_shape),
            "event_shape": tuple(fn.event_shape),
            "plates": [f.name for f in site["cond_indep_stack"]],
            "observed": site["is_observed"],
        }
    return pd.DataFrame(out).T


model_sites = sites(poutine.trace(m.model).get_trace(batch))
guide_sites = sites(poutine.trace(m.guide).get_trace(batch))
display(model_sites, guide_sites)
assert set(guide_sites.index) == set(model_sites.index) - {"y"}
pyro.clear_param_store()  # tracing in Pyro's global mode registered the parameters

# %% [markdown]
# ## 2 · SVI by hand
#
# `pyro.infer.SVI` drives the model and guide like any other Pyro program. Two things to know:
#
# * **Clear the parameter store first.** In this mode Pyro keeps parameters in one global store,
#   keyed by name; two `LMMVAE`s in one session have the same parameter names, so without
#   `pyro.clear_param_store()` the second model would silently pick up the first one's tensors.
#   (The library's own `fit` and loss modules keep parameters local to each model and never
#   touch the store.)
# * **`svi.step(batch)` returns the loss for the whole data set** (the per-instance terms are
#   scaled by P/B). Dividing by `batch.scale` and then by the number of rows gives the per-row
#   negative ELBO that `fit` records in `m.history.train_loss`.
#
# The figure is updated in place every few epochs (`display(..., display_id=True)` and
# `handle.update`); in a stored notebook you see its final state.

# %%
pyro.clear_param_store()
pyro.set_rng_seed(0)
svi = SVI(m.model, m.guide, pyro.optim.Adam({"lr": lr}), TraceMeanField_ELBO())

svi_loss = []
fig = Figure(figsize=(6, 3), layout="constrained")
ax = fig.subplots()
handle = display(fig, display_id=True)
started = time.perf_counter()
for epoch in range(epochs):
    total = 0.0
    for batch in m.batches(batch_size=batch_size, seed=epoch):
        total += svi.step(batch) / batch.scale
    svi_loss.append(total / n_rows)
    if epoch % max(1, epochs // 15) == 0 or epoch == epochs - 1:
        ax.clear()
        ax.plot(svi_loss)
        ax.set(xlabel="epoch", ylabel="negative ELBO per row", title=f"SVI, epoch {epoch + 1}")
        handle.update(fig)
seconds = {"SVI (TraceMeanField_ELBO)": time.perf_counter() - started}
print(
    f"{epochs} epochs in {seconds['SVI (TraceMeanField_ELBO)']:.1f} s; "
    f"loss {svi_loss[0]:.3f} -> {svi_loss[-1]:.3f} per row"
)
assert len(svi_loss) == epochs and svi_loss[-1] < svi_loss[0]

# %% [markdown]
# ## 3 · The parameter store and the modules
#
# Pyro registered every parameter of the model and the guide in the store: the variational
# factors q(A_f) and q(u_p) (`effects.*_loc`, `effects.*_rho`), the encoder and decoder weights
# (the `$$$` separates a PyroModule from a plain `nn.Module` inside it) and the per-feature noise
# of the likelihood. The store holds the **modules' own tensors**, so SVI trained the estimator
# in place, and everything the estimator offers (`effects`, `impute`, `predict`, ...) reflects the
# SVI fit.

# %%
store = pyro.get_param_store()
display(
    pd.DataFrame(
        [(name, tuple(value.shape), value.numel()) for name, value in store.items()],
        columns=["name", "shape", "size"],
    ).set_index("name")
)

guide_params = dict(m.guide.named_parameters())
assert store["effects.fixed_loc"] is guide_params["effects.fixed_loc"]  # one tensor, two names
print("learned noise sd per feature:", m.model.likelihood.scale.detach().numpy().round(3))

# %%
idata = m.effects(num_draws=500)
assert idata.posterior["fixed_effects"].shape == (1, 500, 4, len(m.design.fixed_terms))
arviz_compat.summary(idata, var_names=["fixed_effects"], coords={"latent": [0]}, round_to=3)

# %% [markdown]
# ## 4 · Posterior predictive draws with `pyro.infer.Predictive`
#
# `Predictive(model, guide=guide, num_samples=S)` runs the guide S times and replays the model
# on its draws. The model's signature `model(batch)` is all `Predictive` needs: pass the batch.
#
# The one thing that needs care: in this model `y` is an **observed** site
# (`pyro.sample("y", ..., obs=batch.y)`), and `Predictive` returns the value of an observed
# site, i.e. the data, unchanged. To draw *new* `y`, remove the conditioning with
# `poutine.uncondition(model)`. The draws then cover every entry, the missing ones included, so
# we can check them against the true values the synthetic data keep in `y_true`.

# %%
batcher = m.batches(batch_size=batch_size)
batch = batcher.batch(torch.arange(3))  # the first three training instances
labels = m.design.groups[batch.instances.numpy()]
rows = np.concatenate([np.flatnonzero(train.data["id"] == label) for label in labels])
assert np.array_equal(train.y[rows], batch.y.numpy())  # the batch's rows, in the data's order

pyro.set_rng_seed(1)
as_observed = Predictive(m.model, guide=m.guide, num_samples=50, return_sites=["y"])(batch)
assert torch.equal(as_observed["y"][0, 0], batch.y)  # an observed site returns the data

posterior_predictive = Predictive(
    poutine.uncondition(m.model), guide=m.guide, num_samples=500, return_sites=["y"], parallel=True
)
y_draws = posterior_predictive(batch)["y"].squeeze(1).numpy()  # (draw, row, feature)
print("draws:", y_draws.shape)
assert y_draws.shape == (500, batch.n_rows, train.y.shape[1])

lo, hi = np.quantile(y_draws, [0.05, 0.95], axis=0)
truth = train.y_true[rows]
missing = ~train.mask[rows]
covered = (truth >= lo) & (truth <= hi)
print(
    f"90% posterior predictive intervals cover {covered[missing].mean():.0%} of the missing "
    f"entries and {covered[~missing].mean():.0%} of the observed ones"
)

# %%
label = labels[0]
mine = np.flatnonzero(train.data["id"].to_numpy()[rows] == label)
t = train.data["t"].to_numpy()[rows][mine]
fig, axes = plt.subplots(1, 3, figsize=(12, 3), sharey=True)
for ax, feature in zip(axes, range(3)):
    seen = ~missing[mine, feature]
    ax.fill_between(t, lo[mine, feature], hi[mine, feature], alpha=0.3, label="90% interval")
    ax.plot(t, np.median(y_draws[:, mine, feature], axis=0), label="median draw")
    ax.scatter(t[seen], truth[mine, feature][seen], s=12, color="k", label="observed")
    ax.scatter(
        t[~seen],
        truth[mine, feature][~seen],
        s=22,
        marker="x",
        color="C3",
        label="missing (true value)",
    )
    ax.set(title=f"instance {label}, feature {feature}", xlabel="t")
axes[-1].legend(fontsize=8)
fig.tight_layout()

# %% [markdown]
# **Future time points.** For rows without observations (the test rows: the last time points of
# some instances) the encoder has nothing to encode. Draw only the effects from the guide, then
# run the unconditioned model on them: it draws $z \sim \mathcal N(A_f x + u_p w, \sigma_z^2 I)$
# from the prior and then `y`. This is the model's predictive distribution at new covariates;
# `m.predict` returns the plug-in point prediction $g(M_f x + \mathbb E[u_p] w)$. The band is
# wide because $\sigma_z = 1$ is a fixed prior choice here (`learn_latent_scale=True` learns it).

# %%
test_batch = m.tensors(test.data).full_batch()  # covariates only: y = 0, mask = 1
effect_draws = Predictive(
    m.guide, num_samples=500, return_sites=["fixed_effects", "random_effects"]
)(test_batch)
future = (
    Predictive(poutine.uncondition(m.model), posterior_samples=effect_draws, return_sites=["y"])(
        test_batch
    )["y"]
    .squeeze(1)
    .numpy()
)
assert future.shape == (500, test.n_obs, test.y.shape[1])

lo_f, hi_f = np.quantile(future, [0.05, 0.95], axis=0)
cover = ((test.y_true >= lo_f) & (test.y_true <= hi_f)).mean()
print(
    f"test rows: predict() MSE {metrics.prediction_mse(m.predict(test.data), test.y_true):.4f}, "
    f"mean of the predictive draws MSE {metrics.prediction_mse(future.mean(0), test.y_true):.4f}, "
    f"90% interval coverage {cover:.0%}, mean width {(hi_f - lo_f).mean():.2f}"
)


# %% [markdown]
# ## 5 · The library's loss module in a hand-written torch loop
#
# `m.loss_module(kl=...)` returns the training objective as an ordinary `torch.nn.Module`:
# `loss_fn(batch)` is a differentiable scalar and `loss_fn.parameters()` are the model's and the
# guide's parameters. It runs with **module-local** parameters (no global store), so several
# models coexist without `clear_param_store`, and any torch optimizer, Lightning or DDP can drive
# it. Two estimators of the same ELBO:
#
# * `kl="trace_mean_field"`: `TraceMeanField_ELBO()(model, guide)`, exactly the objective SVI
#   used above (one draw of the effects per step, analytic KLs given that draw);
# * `kl="closed_form"`: the expectation over q(A) of the latent KL in closed form (no draw of
#   the effects): the same expected objective with lower-variance gradients. `fit(kl="auto")`
#   uses it wherever it applies.
#
# Each loop below starts from the same initial weights (`build()`) and sees the same batches.


# %%
def train_by_hand(kl: str):
    model = build()
    loss_fn = model.loss_module(kl=kl)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=lr)
    torch.manual_seed(0)
    losses = []
    started = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        for batch in model.batches(batch_size=batch_size, seed=epoch):
            optimizer.zero_grad()
            loss = loss_fn(batch)
            loss.backward()
            optimizer.step()
            total += loss.item() / batch.scale
        losses.append(total / n_rows)
    return model, losses, time.perf_counter() - started


in_store = set(pyro.get_param_store().keys())
models = {"SVI (TraceMeanField_ELBO)": m}
curves = {"SVI (TraceMeanField_ELBO)": svi_loss}
for kl in ("trace_mean_field", "closed_form"):
    name = f"loss_module(kl={kl!r})"
    models[name], curves[name], seconds[name] = train_by_hand(kl)
    print(f"{name}: {type(models[name].loss_module(kl=kl)).__name__}, {seconds[name]:.1f} s")
    assert curves[name][-1] < curves[name][0]
assert set(pyro.get_param_store().keys()) == in_store  # module-local: the store is untouched
svi_vs_module = abs(
    curves["SVI (TraceMeanField_ELBO)"][0] - curves["loss_module(kl='trace_mean_field')"][0]
)
assert svi_vs_module < 1e-3  # same draws, same update: the first epochs agree

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
styles = [dict(lw=4, alpha=0.35), dict(lw=1.2, ls="--"), dict(lw=1.2)]  # SVI lies under the dashes
for (name, losses), style in zip(curves.items(), styles):
    axes[0].plot(losses, label=name, **style)
    tail = max(1, len(losses) // 3)
    axes[1].plot(range(len(losses) - tail, len(losses)), losses[-tail:], label=name, **style)
axes[0].set(xlabel="epoch", ylabel="negative ELBO per row", title="training loss")
axes[1].set(xlabel="epoch", title="last third of training")
axes[0].legend(fontsize=8)
fig.tight_layout()

summary = pd.DataFrame(
    {
        "final loss per row": {name: losses[-1] for name, losses in curves.items()},
        "seconds": seconds,
        "test prediction MSE": {
            name: metrics.prediction_mse(model.predict(test.data), test.y_true)
            for name, model in models.items()
        },
    }
)
summary

# %% [markdown]
# The two `TraceMeanField_ELBO` runs compute the same estimator with the same random draws (both
# loops seed torch with 0; `pyro.set_rng_seed` seeds torch too) and the same Adam update (Pyro's
# `PyroOptim` wrapper keeps one Adam per parameter, the hand loop one `torch.optim.Adam` for all),
# so their curves coincide: SVI with Pyro's global store and the library's module-local loss are
# the same computation. The closed-form run estimates the same expected objective without drawing
# the effects, which lowers the gradient noise.
#
# `m.fit` adds to such a loop what a real fit needs: an exponential learning-rate decay, a lazy
# (sparse) Adam for the per-instance random-effect tables (a step costs O(batch) however many
# instances there are), validation with best-weights selection and early stopping, a NaN guard,
# exact-resume checkpoints and `device="cuda"`.
