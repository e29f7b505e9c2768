"""Saved models and checkpoints: a versioned file of plain values, tensors and state dicts.

A file written by :meth:`~pyro_lmmvae.LMMVAE.save` (or a checkpoint of
:meth:`~pyro_lmmvae.LMMVAE.fit`) holds no pickled Python objects, only what
``torch.load(weights_only=True)`` reads: the constructor arguments, the training rows (covariate
columns as tensors or lists, ``y`` and ``mask``), the design's encodings, the ``state_dict`` of the
model and guide, and the history. Loading rebuilds the estimator through its constructor and
loads the state dict into it, so renaming or moving a class never breaks a saved file (the
approach of scvi-tools). The design rebuilt from the saved rows is checked against the saved
encodings (term names, factor levels, groups, standardisation).

Objects that the file cannot describe by value, a custom encoder or decoder network, a custom
likelihood or a custom :class:`~pyro_lmmvae.priors.EffectPrior`, are recorded by class name and
passed again to :meth:`~pyro_lmmvae.LMMVAE.load`; their weights come from the file.

Layout (format version 3; versions 1–2 were the pickled object graphs of pyro_lmmvae 0.1)::

    format, format_version, library_version
    constructor   {formula, latent_dim, options..., network, priors, likelihood, ...}
    data          {"columns": [...], "values": {column: encoded column}}
    y, mask       tensors (N, D)
    design        {fixed_terms, random_terms, groups, standardization, categories}
    state_dict    model and guide parameters and buffers
    history       TrainingHistory.to_dict()
    [fit_settings, training_state]   checkpoints only

Modules: :mod:`~pyro_lmmvae.persistence.files` (the archive and its checks),
:mod:`~pyro_lmmvae.persistence.codecs` (rows, priors and likelihoods as plain values),
:mod:`~pyro_lmmvae.persistence.estimator` (the estimator's payload, its rebuild, and
``save``/``load``; not imported here, as it builds on the training loop, whose checkpoints use
this format) and :mod:`~pyro_lmmvae.persistence.legacy` (0.1 files, on trust).
"""

from pyro_lmmvae.persistence.codecs import (
    decode_frame,
    decode_likelihood,
    decode_prior,
    encode_frame,
    encode_likelihood,
    encode_prior,
)
from pyro_lmmvae.persistence.files import (
    FORMAT,
    FORMAT_VERSION,
    LEGACY_FORMATS,
    LegacyFormatError,
    ModelFileError,
    check_device,
    read_model_file,
    write_model_file,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LEGACY_FORMATS",
    "LegacyFormatError",
    "ModelFileError",
    "check_device",
    "decode_frame",
    "decode_likelihood",
    "decode_prior",
    "encode_frame",
    "encode_likelihood",
    "encode_prior",
    "read_model_file",
    "write_model_file",
]
