"""The save format: plain values and state dicts read with ``weights_only=True``, rebuilt through
the constructor; clear one-line errors for every file that cannot be read; 0.1 files convert."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from pyro_lmmvae import LMMVAE, SpectralPrior
from pyro_lmmvae.persistence import (
    FORMAT_VERSION,
    LegacyFormatError,
    ModelFileError,
    decode_frame,
    encode_frame,
)
from pyro_lmmvae.training.checkpoint import CHECKPOINT_KEY, read_checkpoint

DATA = Path(__file__).resolve().parents[1] / "data"
FIT = dict(max_epochs=2, batch_size=8, validation=None, progress=False)


def _train(ds):
    return ds.split("train")


@pytest.fixture(scope="module")
def fitted(small_synthetic) -> LMMVAE:
    tr = _train(small_synthetic)
    m = LMMVAE(
        "~ 1 + t + g + (1 + t | id)",
        data=tr.data,
        y=tr.y,
        mask=tr.mask,
        latent_dim=3,
        fixed_prior=dist.Laplace(0.0, 0.5),
        random_prior="learned_scale",
        learn_latent_scale=True,
    )
    return m.fit(**FIT)


def _pickled_globals(path: Path) -> str:
    """The pickle stream of a torch.save archive, as text (class paths appear verbatim)."""
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        return archive.read(name).decode("latin-1")


def test_saved_file_holds_no_object_graph_and_reloads_bit_equal(fitted, small_synthetic, tmp_path):
    path = fitted.save(tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)  # refuses any pickled class but tensors
    assert payload["format_version"] == FORMAT_VERSION
    assert "pyro_lmmvae" not in _pickled_globals(path).replace("pyro_lmmvae.LMMVAE", "")
    back = LMMVAE.load(path)
    test = small_synthetic.split("test").data
    np.testing.assert_array_equal(back.predict(test), fitted.predict(test))
    np.testing.assert_array_equal(back.impute(), fitted.impute())
    np.testing.assert_array_equal(back.latents(), fitted.latents())
    for key, value in fitted.pair.state_dict().items():
        assert torch.equal(back.pair.state_dict()[key], value), key
    assert back.pair.model.effects.fixed_prior.describe() == "Laplace(loc=0, scale=0.5)"
    assert back.history == fitted.history


def test_prior_swapped_after_construction_is_saved(small_synthetic, tmp_path):
    tr = _train(small_synthetic)
    m = LMMVAE("~ 1 + t + (1 | id)", data=tr.data, y=tr.y, mask=tr.mask, latent_dim=2)
    m.model.effects.fixed_prior = dist.StudentT(3.0, 0.0, 2.0)
    back = LMMVAE.load(m.save(tmp_path / "m.pt"))
    assert back.model.effects.fixed_prior.describe() == "StudentT(df=3, loc=0, scale=2)"


def test_spectral_prior_round_trips(small_synthetic, tmp_path):
    tr = _train(small_synthetic)
    prior = SpectralPrior("matern32", lengthscale=0.3, learn="variance", scale=2.0)
    m = LMMVAE(
        "~ 1 + fourier(t, 3)",
        data=tr.data,
        y=tr.y,
        mask=tr.mask,
        latent_dim=2,
        instance="id",
        fixed_prior=prior,
    )
    m.fit(**FIT)
    back = LMMVAE.load(m.save(tmp_path / "m.pt"))
    assert back.model.effects.fixed_prior.config() == m.model.effects.fixed_prior.config()
    test = small_synthetic.split("test").data
    np.testing.assert_array_equal(back.predict(test), m.predict(test))


class TinyDecoder(nn.Module):
    def __init__(self, latent_dim: int, obs_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(latent_dim, obs_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)


def test_custom_network_is_passed_again(small_synthetic, tmp_path):
    tr = _train(small_synthetic)
    D = tr.y.shape[1]
    m = LMMVAE(
        "~ 1 + t + (1 | id)",
        data=tr.data,
        y=tr.y,
        mask=tr.mask,
        latent_dim=2,
        decoder=TinyDecoder(2, D),
    ).fit(**FIT)
    path = m.save(tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match=r"custom decoder \(TinyDecoder\).*decoder=\.\.\."):
        LMMVAE.load(path)
    back = LMMVAE.load(path, decoder=TinyDecoder(2, D))  # freshly initialised: weights from file
    np.testing.assert_array_equal(back.impute(), m.impute())
    with pytest.raises(ModelFileError, match="do not fit the model rebuilt"):
        LMMVAE.load(path, decoder=TinyDecoder(2, D + 1))


def test_frame_encoding_keeps_dtypes_and_drops_unused_objects():
    frame = pd.DataFrame(
        {
            "x": np.array([0.5, 1.5, 2.5]),
            "n": np.array([1, 2, 3], dtype=np.int32),
            "b": [True, False, True],
            "s": ["a", "b", "a"],
            "f": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
            "when": pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-03"]),
        }
    )
    encoded = encode_frame(frame, needed={"x", "s", "f"})
    back = decode_frame(encoded)
    pd.testing.assert_frame_equal(back, frame.drop(columns="when"))
    with pytest.raises(ValueError, match="column 'when' of dtype datetime64"):
        encode_frame(frame, needed={"when"})


def test_checkpoint_is_the_same_format_and_resumes(small_synthetic, tmp_path):
    tr = _train(small_synthetic)
    m = LMMVAE("~ 1 + t + (1 | id)", data=tr.data, y=tr.y, mask=tr.mask, latent_dim=2)
    path = tmp_path / "run.ckpt"
    m.fit(max_epochs=2, batch_size=8, validation=0.2, progress=False, checkpoint=path)
    torch.load(path, weights_only=True)
    state = read_checkpoint(path)[CHECKPOINT_KEY]
    assert state.epoch == 2 and state.random.batcher_state is not None
    assert LMMVAE.load(path).history.train_loss == m.history.train_loss
    with pytest.raises(ModelFileError, match="a saved model, not a checkpoint"):
        read_checkpoint(m.save(tmp_path / "m.pt"))


# ----------------------------------------------------------------------------- bad files
def test_unreadable_files_give_one_line_errors(fitted, tmp_path):
    good = fitted.save(tmp_path / "good.pt")
    raw = good.read_bytes()
    cases = {
        "empty.pt": (b"", "is empty"),
        "truncated.pt": (raw[: len(raw) // 2], "not a torch.save archive|damaged or truncated"),
        "table.csv": (b"a,b\n1,2\n", "not a torch.save archive"),
    }
    for name, (content, match) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelFileError, match=match) as info:
            LMMVAE.load(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ModelFileError, match="not a pyro_lmmvae model file"):
        LMMVAE.load(tmp_path / "tensor.pt")
    torch.save(nn.Linear(2, 2), tmp_path / "module.pt")  # a foreign pickled object
    with pytest.raises(ModelFileError, match="not a pyro_lmmvae model file"):
        LMMVAE.load(tmp_path / "module.pt")
    with pytest.raises(FileNotFoundError, match="no model file at"):
        LMMVAE.load(tmp_path / "missing.pt")


def test_newer_format_version_is_refused(fitted, tmp_path):
    payload = torch.load(fitted.save(tmp_path / "m.pt"), weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    payload["library_version"] = "9.0"
    torch.save(payload, tmp_path / "new.pt")
    with pytest.raises(
        ModelFileError,
        match=r"format version 4 \(written by pyro_lmmvae 9.0\).*"
        "upgrade pyro_lmmvae",
    ):
        LMMVAE.load(tmp_path / "new.pt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_cuda_map_location_without_cuda(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.pt")
    with pytest.raises(ModelFileError, match=r"onto cuda.*0 CUDA device\(s\); load with device"):
        LMMVAE.load(path, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_saved_on_cuda_loads_on_cpu(small_synthetic, tmp_path):
    tr = _train(small_synthetic)
    m = LMMVAE("~ 1 + t + (1 | id)", data=tr.data, y=tr.y, mask=tr.mask, latent_dim=2)
    m.fit(**{**FIT, "device": "cuda"})
    assert all(p.is_cuda for p in m.pair.parameters())
    back = LMMVAE.load(m.save(tmp_path / "m.pt"), device="cpu")
    assert not any(p.is_cuda for p in back.pair.parameters())
    for key, value in m.pair.state_dict().items():
        assert torch.equal(back.pair.state_dict()[key], value.cpu()), key
    test = small_synthetic.split("test").data
    np.testing.assert_allclose(back.predict(test), m.predict(test), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- version 0.1
def test_legacy_file_needs_trust_then_converts_exactly(tmp_path):
    path = DATA / "model_v0_1.pt"
    with pytest.raises(LegacyFormatError, match=r"pyro_lmmvae 0.1.*trust_pickle=True\)\.save"):
        LMMVAE.load(path)
    covariates = pd.read_csv(DATA / "model_v0_1_covariates.csv")
    expected = np.load(DATA / "model_v0_1_predict.npy")
    old = LMMVAE.load(path, trust_pickle=True)
    np.testing.assert_array_equal(old.predict(covariates), expected)
    assert old.pair.model.effects.fixed_prior.describe() == "Laplace(loc=0, scale=0.5)"
    converted = old.save(tmp_path / "converted.pt")
    torch.load(converted, weights_only=True)
    np.testing.assert_array_equal(LMMVAE.load(converted).predict(covariates), expected)


def test_legacy_file_with_a_spectral_prior_reads_the_moved_gp_modules(tmp_path):
    """A 0.1 pickle names pyro_lmmvae.bases / .spectral / .spectral_priors, now pyro_lmmvae.gp."""
    from pyro_lmmvae.gp import BasisColumn, Kernel

    path = DATA / "model_v0_1_fourier.pt"
    with pytest.raises(LegacyFormatError):
        LMMVAE.load(path)
    covariates = pd.read_csv(DATA / "model_v0_1_fourier_covariates.csv")
    expected = np.load(DATA / "model_v0_1_fourier_predict.npy")
    old = LMMVAE.load(path, trust_pickle=True)
    np.testing.assert_array_equal(old.predict(covariates), expected)
    prior = old.pair.model.effects.fixed_prior
    assert isinstance(prior, SpectralPrior)
    assert prior.terms == {"fourier(t,2)": Kernel("matern32", 1.0, 0.4)}
    assert prior.learn == frozenset({"variance"})
    assert all(isinstance(c, BasisColumn) for c in old.design.fixed_bases[-4:])
    converted = old.save(tmp_path / "converted.pt")
    torch.load(converted, weights_only=True)
    again = LMMVAE.load(converted)
    np.testing.assert_array_equal(again.predict(covariates), expected)
    assert again.pair.model.effects.fixed_prior.describe() == prior.describe()


# ----------------------------------------------------------------------------- version 0.2
def test_file_of_0_2_keeps_its_input_standardization(tmp_path):
    """0.2 z-scored covariates before the formula; its files load with that design.

    The fixture's formula has an interaction and a function of t, whose columns differ between
    the two standardisations, so a file read with the new column standardisation would predict
    differently.
    """
    covariates = pd.read_csv(DATA / "model_v0_2_covariates.csv")
    expected = np.load(DATA / "model_v0_2_predict.npy")
    old = LMMVAE.load(DATA / "model_v0_2.pt")
    assert old.design.scaling == "inputs"
    np.testing.assert_array_equal(old.predict(covariates), expected)
    resaved = LMMVAE.load(old.save(tmp_path / "resaved.pt"))
    assert resaved.design.scaling == "inputs"
    np.testing.assert_array_equal(resaved.predict(covariates), expected)
    # Power: the same formula with today's column standardisation encodes other columns.
    new = type(old.design)(old.design.formula, covariates)
    assert new.scaling == "columns"
    assert not np.allclose(new.transform(covariates).fixed, old.design.transform(covariates).fixed)
