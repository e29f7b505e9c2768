"""The paper-benchmark report: summaries, Markdown tables (bold rule), figures and files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.paper import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _rows(dataset, experiment, model, covariates, metric, values, latent_dim=2, n_basis=0):
    return [
        dict(
            dataset=dataset,
            experiment=experiment,
            model=model,
            covariates=covariates,
            latent_dim=latent_dim,
            n_basis=n_basis,
            seed=str(seed),
            metric=metric,
            value=float(value),
        )
        for seed, value in enumerate(values)
    ]


def _tables(markdown: str) -> list[list[dict[str, str]]]:
    """Parse every Markdown table of ``markdown`` into a list of {header: cell} rows."""
    tables, lines = [], markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and "---" in lines[i + 1]:
            header = [h.strip() for h in lines[i].strip("|").split("|")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip("|").split("|")]
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


@pytest.fixture()
def bold_case() -> pd.DataFrame:
    """Four configurations; imputation_mse: best 2 ± 1, then 2.5, 3 (on the edge), 4."""
    rows = []
    for model, mse, mcc in [("A", 2.0, 0.6), ("B", 2.5, 0.7), ("C", 3.0, 0.8), ("D", 4.0, 0.9)]:
        rows += _rows("synth", "main", model, "(i)", "imputation_mse", [mse - 1, mse, mse + 1])
        rows += _rows("synth", "main", model, "(i)", "mcc_truth", [mcc - 0.01, mcc, mcc + 0.01])
    return pd.DataFrame(rows)


def test_summarize_matches_numpy():
    rng = np.random.default_rng(0)
    rows, expected = [], []
    for dataset in ("zeta", "alpha"):
        for model, covariates, n in [("VAE", "-", 1), ("oLMM", "(ii)", 3), ("CVAE", "(i)", 5)]:
            for metric in ("prediction_mse", "mcc_seeds"):
                values = rng.normal(size=n)
                rows += _rows(dataset, "main", model, covariates, metric, values)
                std = values.std(ddof=1) if n > 1 else np.nan
                expected.append((dataset, model, metric, values.mean(), std, n))
    results = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # shuffle the rows
    # the expected order: that in which the groups first appear in the shuffled table
    keys = zip(results.dataset, results.model, results.metric, strict=True)
    position = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    expected.sort(key=lambda e: position[e[:3]])

    summary = report.summarize(results)
    assert list(summary.columns) == [*report.GROUP_COLUMNS, "mean", "std", "n"]
    assert list(zip(summary.dataset, summary.model, summary.metric, strict=True)) == [
        e[:3] for e in expected
    ]
    np.testing.assert_allclose(summary["mean"], [e[3] for e in expected], rtol=1e-12)
    np.testing.assert_allclose(summary["std"], [e[4] for e in expected], rtol=1e-12)
    assert summary["std"].isna().sum() == 4  # the n == 1 groups
    assert summary["n"].tolist() == [e[5] for e in expected]


def test_summarize_rejects_missing_columns(bold_case):
    with pytest.raises(ValueError, match="metric"):
        report.summarize(bold_case.drop(columns="metric"))


def test_bold_rule(bold_case):
    (table,) = _tables(report.markdown_tables(bold_case))
    assert [row["model"] for row in table] == ["A", "B", "C", "D"]
    mse = [row["imputation_mse"] for row in table]
    assert mse == ["**2 ± 1**", "**2.5 ± 1**", "**3 ± 1**", "4 ± 1"]
    mcc = [row["mcc_truth"] for row in table]
    assert mcc == ["0.6 ± 0.01", "0.7 ± 0.01", "0.8 ± 0.01", "**0.9 ± 0.01**"]


def test_bold_rule_with_zero_or_undefined_std():
    rows = []
    rows += _rows("synth", "main", "A", "(i)", "interpolation_mse", [1.0, 1.0])  # std 0
    rows += _rows("synth", "main", "B", "(i)", "interpolation_mse", [1.0, 1.0])
    rows += _rows("synth", "main", "C", "(i)", "interpolation_mse", [1.0 + 1e-6, 1.0 + 1e-6])
    rows += _rows("synth", "main", "A", "(i)", "mcc_seeds", [0.9])  # n == 1, std NaN
    rows += _rows("synth", "main", "B", "(i)", "mcc_seeds", [0.8, 0.9])
    rows += _rows("synth", "main", "C", "(i)", "mcc_seeds", [0.85])
    (table,) = _tables(report.markdown_tables(pd.DataFrame(rows)))
    assert [r["interpolation_mse"].startswith("**") for r in table] == [True, True, False]
    assert [r["mcc_seeds"].startswith("**") for r in table] == [True, False, False]


def test_single_run_and_varying_n_cells():
    rows = _rows("synth", "main", "oLMM", "(i)", "imputation_mse", [0.5])
    (table,) = _tables(report.markdown_tables(pd.DataFrame(rows)))
    assert table == [{"model": "oLMM", "imputation_mse": "**0.5 ± –**"}]

    rows += _rows("synth", "main", "VAE", "(i)", "imputation_mse", [0.01, 0.03])
    (table,) = _tables(report.markdown_tables(pd.DataFrame(rows)))
    assert table[0]["imputation_mse"] == "0.5 ± – (n=1)"
    assert table[1]["imputation_mse"] == "**0.02 ± 0.01414 (n=2)**"


def test_constant_columns_omitted_and_first_appearance_order():
    rows = []
    rows += _rows("zeta", "main", "VAE", "-", "prediction_mse", [1.0, 2.0], latent_dim=4)
    rows += _rows("zeta", "main", "oLMM", "(ii)", "prediction_mse", [1.0, 2.0], latent_dim=4)
    rows += _rows("zeta", "main", "CVAE", "(i)", "prediction_mse", [1.0, 2.0], latent_dim=4)
    rows += _rows("zeta", "main", "VAE", "-", "imputation_mse", [1.0, 2.0], latent_dim=4)
    rows += _rows("alpha", "basis_sweep", "oLMM", "(i)", "prediction_mse", [1.0], n_basis=8)
    rows += _rows("alpha", "basis_sweep", "oLMM", "(i)", "prediction_mse", [2.0], n_basis=2)
    markdown = report.markdown_tables(pd.DataFrame(rows), title="Replication")
    assert markdown.startswith("# Replication\n")
    assert markdown.index("## zeta — main") < markdown.index("## alpha — basis_sweep")
    zeta, alpha = _tables(markdown)
    assert list(zeta[0]) == ["model", "covariates", "prediction_mse", "imputation_mse"]
    assert [r["model"] for r in zeta] == ["VAE", "oLMM", "CVAE"]
    assert [r["covariates"] for r in zeta] == ["-", "(ii)", "(i)"]
    assert [r["imputation_mse"] for r in zeta] == ["**1.5 ± 0.7071**", "–", "–"]
    assert list(alpha[0]) == ["2M", "prediction_mse"]
    assert [r["2M"] for r in alpha] == ["8", "2"]
    # the constant values are stated, the direction of each metric under the table
    assert "Fixed: L = 4." in markdown
    assert "Fixed: model = oLMM, covariates = (i), L = 2." in markdown
    assert "prediction_mse: lower is better" in markdown
    assert markdown.count("**Bold**: mean within one standard deviation") == 2


def _only_png(folder, path):
    assert sorted(p.name for p in folder.iterdir()) == [path.name]  # no temporary file left
    data = path.read_bytes()
    assert len(data) > 100 and data.startswith(PNG_MAGIC)


def test_plot_basis_sweep(tmp_path):
    rows = []
    for n_basis in (2, 4, 8, 16):
        for model, covariates in [("oLMM", "(i)"), ("sLMM-GSNN", "(i)"), ("oLMM", "(ii)")]:
            values = 1.0 / n_basis + np.array([0.0, 0.01, 0.03])
            rows += _rows(
                "gp", "basis_sweep", model, covariates, "prediction_mse", values, n_basis=n_basis
            )
    rows += _rows("gp", "main", "VAE", "-", "prediction_mse", [0.3, 0.4])  # n_basis 0: left out
    results = pd.DataFrame(rows)
    path = report.plot_basis_sweep(results, "prediction_mse", tmp_path / "sweep.png", title="t")
    assert path == tmp_path / "sweep.png"
    _only_png(tmp_path, path)
    with pytest.raises(ValueError, match="n_basis > 0"):
        report.plot_basis_sweep(results, "mcc_truth", tmp_path / "none.png")


def test_plot_image_grid(tmp_path):
    rng = np.random.default_rng(0)
    images = {
        "truth": rng.uniform(size=(5, 12)),
        "masked input": rng.uniform(size=(5, 12)),
        "oLMM": rng.uniform(size=(3, 12)),
    }
    mask = {"masked input": rng.uniform(size=(5, 12)) > 0.3}
    path = report.plot_image_grid(images, (3, 4), tmp_path / "grid.png", title="g", mask=mask)
    _only_png(tmp_path, path)
    with pytest.raises(ValueError):
        report.plot_image_grid({"x": np.zeros((2, 10))}, (3, 4), tmp_path / "bad.png")


def test_plot_trajectories(tmp_path):
    t = np.linspace(0.0, 10.0, 12)
    truth = np.stack([np.sin(t), np.cos(t), t / 10], axis=1)
    mask = np.random.default_rng(0).uniform(size=truth.shape) > 0.4
    observed = np.where(mask, truth, np.nan)
    predicted = {"oLMM": truth + 0.1, "VAE": truth - 0.1}
    path = report.plot_trajectories(
        t,
        observed,
        mask,
        predicted,
        ["HR", "Temp", "GCS"],
        tmp_path / "traj.png",
        title="id 7",
        split_time=7.5,
    )
    _only_png(tmp_path, path)
    with pytest.raises(ValueError, match="shape"):
        report.plot_trajectories(t, observed, mask, predicted, ["HR", "Temp"], tmp_path / "x.png")


def test_write_report_round_trips(tmp_path, bold_case):
    results = pd.concat(
        [
            bold_case,
            pd.DataFrame(_rows("synth", "identifiability", "VAE", "-", "mcc_seeds", [0.5, 0.6])),
        ],
        ignore_index=True,
    )
    results.loc[results.index[-2:], "seed"] = ["0-1", "1-2"]
    results["epochs"] = 100
    results["train_seconds"] = np.linspace(0.1, 3.3, len(results))
    paths = report.write_report(results, tmp_path / "out", "Paper replication")
    assert paths == {"csv": tmp_path / "out/results.csv", "markdown": tmp_path / "out/results.md"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.csv", "results.md"]

    back = pd.read_csv(paths["csv"], dtype={"seed": str})
    pd.testing.assert_frame_equal(back, results)
    pd.testing.assert_frame_equal(report.read_results(paths["csv"]), results)
    text = paths["markdown"].read_text()
    assert text == report.markdown_tables(results, title="Paper replication")
    assert text.startswith("# Paper replication\n") and "## synth — identifiability" in text
