"""``skinfluence mislabels --dask / --scheduler``: the table read, encoded and scored by dask.

Ground truth: the in-memory reader and encoder (:mod:`skinfluence.tabular`) on the
same file, scikit-learn's fitted preprocessor on the same columns, numpy's median,
and the in-memory explainer of a tightly converged logistic regression on the same
model input (the dask fit is Newton's method to the exact optimum).
"""

import csv

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

from skinfluence import InfluenceExplainer, tabular  # noqa: E402
from skinfluence.cli import main  # noqa: E402
from skinfluence.dask import table  # noqa: E402

#: Bytes of CSV per partition: the test tables split into several uneven partitions.
BLOCK = 7000


def _frame(n=1200, seed=0):
    """Numbers with missing cells in several spellings, a category with blanks around its
    values, a column that looks numeric in early rows only, labels with some missing."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n).round(4)
    b = rng.choice(["red", " blue", "green ", "NA", "Red"], n)
    c = rng.integers(-3, 4, n).astype(str)
    c[n - 7] = "seven"  # text in a late partition only: the column is categorical
    logits = np.column_stack([a, (b == "red") - 0.5, rng.normal(size=n)])
    y = np.array(["p", "q", "r"])[np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)]
    y[rng.random(n) < 0.04] = ""
    df = pd.DataFrame(
        {"a": a.astype(str), "b": b, "c": c, "label": y, "w": rng.exponential(size=n)}
    )
    df.loc[::13, "a"] = "?"
    df.loc[5::29, "a"] = " nan "
    df.loc[3::31, "w"] = np.nan
    return df


@pytest.fixture
def table_csv(tmp_path):
    path = tmp_path / "table.csv"
    _frame().to_csv(path, index=False)
    return str(path)


def _in_memory(path):
    header, columns = tabular.read_csv(path, text_columns={"label"})
    return tabular.encode_columns(header, columns, "label")


def test_encoding_equals_the_in_memory_reader(table_csv):
    """Kinds, levels, codes, file rows and labels as tabular gives them; the fitted
    preprocessor's output as scikit-learn's make_preprocessor on the same columns."""
    with dask.config.set(scheduler="sync"):
        header, parts, _ = table.read_table(table_csv, blocksize=BLOCK)
        assert len(parts) > 3
        tab = table.census(parts, header, "label")
        X, y, rows = table.encode(parts, tab, "label")
        stats = table.fit_preprocessor(X, tab)
        Z = table.preprocess(X, stats).compute()
        X, y, rows = X.compute(), y.compute(), rows.compute()
    Xm, ym, kinds, rm = _in_memory(table_csv)
    assert tab["kinds"]["numeric"] == kinds["numeric"] == [0, 3]
    assert tab["kinds"]["categorical"] == kinds["categorical"] == [1, 2]
    for j in kinds["categorical"]:
        np.testing.assert_array_equal(tab["kinds"]["levels"][j], kinds["levels"][j])
    np.testing.assert_array_equal(X, Xm)  # NaN where missing, in both
    np.testing.assert_array_equal(rows, rm)
    np.testing.assert_array_equal(tab["classes"][y], ym)
    assert tab["n_file_rows"] == 1200
    want = tabular.make_preprocessor(kinds, dense=True).fit_transform(Xm)
    np.testing.assert_allclose(Z, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("gather", [table.GATHER, 0])
def test_medians_are_exact(monkeypatch, gather):
    """The radix selection gives numpy's median: ties, signed zeros, negatives, even and
    odd counts, a constant column; with gather=0 every bit is resolved by histograms."""
    monkeypatch.setattr(table, "GATHER", gather)
    rng = np.random.default_rng(3)
    n = 5001
    X = np.column_stack(
        [
            rng.normal(size=n),
            -np.abs(rng.standard_cauchy(n)) * 1e5,
            np.repeat([-0.0, 0.0, 1.0, 2.0], n // 4 + 1)[:n],
            rng.integers(-3, 3, n).astype(float),
            np.full(n, 7.25),
            np.r_[rng.normal(size=n - 1) * 1e-300, np.nan],
        ]
    )
    X[rng.random(X.shape) < 0.1] = np.nan
    counts = (~np.isnan(X)).sum(axis=0)
    assert len(set(counts % 2)) == 2  # odd and even counts both
    Xd = da.from_array(X, chunks=((1000, 1, 2500, 1500), -1))
    with dask.config.set(scheduler="sync"):
        got = table.medians(Xd, list(range(X.shape[1])), counts)
    np.testing.assert_array_equal(got, np.nanmedian(X, axis=0))


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _truth(path, seed, cv=5):
    """In memory: the same model input, a tightly converged fit, the same folds."""
    Xm, ym, kinds, rm = _in_memory(path)
    Z = tabular.make_preprocessor(kinds, dense=True).fit_transform(Xm)
    classes, y = np.unique(ym, return_inverse=True)
    model = LogisticRegression(tol=1e-13, max_iter=100_000)
    ex = InfluenceExplainer(model, random_state=seed).fit(Z, y)
    scores = ex.mislabel_scores("auto", cv=cv)
    flagged = np.zeros(len(y), dtype=bool)
    flagged[ex.find_mislabeled(cv=cv)] = True
    return rm, scores, classes[ex.estimator_.predict(Z)], flagged


def test_on_a_cluster_the_ranked_file_equals_the_in_memory_scores(
    client, table_csv, tmp_path, capsys
):
    out = tmp_path / "ranked.csv"
    argv = ["mislabels", table_csv, "--target", "label", "--out", str(out), "--seed", "3"]
    status = main([*argv, "--scheduler", client.scheduler.address, "--blocksize", str(BLOCK)])
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert "cv_blend_loss (auto)" in printed.out
    header, ranked = _read(out)
    assert header == ["rank", "row", "score", "predicted", "flagged", "a", "b", "c", "label", "w"]
    rows, scores, predicted, flagged = _truth(table_csv, seed=3)
    assert [int(r[0]) for r in ranked] == list(range(1, len(rows) + 1))
    got_rows = np.array([int(r[1]) for r in ranked])
    got_scores = np.array([float(r[2]) for r in ranked])
    assert np.all(np.diff(got_scores) <= 0)  # most suspicious first
    at = np.searchsorted(rows, got_rows)
    np.testing.assert_array_equal(rows[at], got_rows)  # every labelled row, once
    assert len(set(got_rows)) == len(rows)
    np.testing.assert_allclose(got_scores, scores[at], rtol=1e-6)
    np.testing.assert_array_equal([r[3] for r in ranked], predicted[at])
    np.testing.assert_array_equal([r[4] == "1" for r in ranked], flagged[at])
    assert 0 < flagged.sum() < len(rows)
    # the input's cells as the in-memory command line writes them (same rows, same text)
    mem_out = tmp_path / "ranked_in_memory.csv"
    assert main([*argv[:4], "--out", str(mem_out), "--seed", "3"]) == 0
    capsys.readouterr()
    mem_header, mem = _read(mem_out)
    assert mem_header == header
    by_row = {r[1]: r[5:] for r in mem}
    assert all(r[5:] == by_row[r[1]] for r in ranked)


def test_parquet_and_a_local_cluster_of_its_own(tmp_path, capsys):
    """A Parquet file with typed columns gives the same ranking as the CSV of the same
    table, on a LocalCluster that --dask starts and stops."""
    df = _frame(n=600, seed=4).drop(columns="c")
    df["a"] = pd.to_numeric(df["a"], errors="coerce")
    df["n"] = np.arange(600) % 7  # an integer column
    df.to_parquet(tmp_path / "t.parquet", row_group_size=150)
    df.to_csv(tmp_path / "t.csv", index=False)
    outs = {}
    for name in ("t.parquet", "t.csv"):
        outs[name] = tmp_path / f"{name}.ranked.csv"
        argv = ["mislabels", str(tmp_path / name), "--target", "label", "--method", "loss"]
        status = main([*argv, "--out", str(outs[name]), "--dask", "--workers", "1"])
        assert status == 0, capsys.readouterr().err
    capsys.readouterr()
    (h1, r1), (h2, r2) = _read(outs["t.parquet"]), _read(outs["t.csv"])
    assert h1 == h2
    assert [r[1] for r in r1] == [r[1] for r in r2]
    np.testing.assert_allclose([float(r[2]) for r in r1], [float(r[2]) for r in r2], rtol=1e-12)
    # the Parquet numbers are written as Python prints them, the CSV's as pandas wrote them
    assert all(x[5:] == z[5:] for x, z in zip(r1, r2, strict=True))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "mlp"], "--model mlp is not available with --dask"),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers sizes the"),
        (["--blocksize", "12XB"], "--blocksize: must be a size in bytes"),
        (["--target", "nope"], "target column 'nope' not found"),
    ],
)
def test_what_the_command_refuses_on_dask(table_csv, capsys, extra, message):
    """One line on stderr, status 2, before any cluster is started."""
    argv = ["mislabels", table_csv, "--target", "label", *extra]
    if "--scheduler" not in extra:
        argv.append("--dask")
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    assert status == 2
    assert message in capsys.readouterr().err
