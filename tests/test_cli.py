"""The command line, run the way a user runs it."""

import csv
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import make_classification

from skinfluence.datasets import flip_labels
from skinfluence.mislabel import AUTO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "skinfluence", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_finds_flipped_labels_explains_an_error_and_writes_plots(tmp_path):
    res = run("demo", "--plots", tmp_path / "figs")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "135 labels flipped" in out
    rows = dict(re.findall(r"^\s+(\d+)% \| +([\d.]+) \|", out, flags=re.M))
    assert set(rows) == {"5", "10", "20", "30"}
    # self-influence finds far more flips than checking at random would
    assert float(rows["10"]) > 0.5
    assert float(rows["30"]) > 0.9
    assert "most helpful" in out and "most harmful" in out
    names = {"detection_curve.png", "self_influence.png", "influence.png"}
    assert {p.name for p in (tmp_path / "figs").iterdir()} == names
    for name in names:
        assert (tmp_path / "figs" / name).read_bytes()[:8] == PNG_MAGIC
        assert f"wrote {tmp_path / 'figs' / name}" in out


def test_bad_arguments_exit_nonzero_without_traceback():
    res = run("demo", "--noise", "2")
    assert res.returncode == 2
    assert res.stderr.startswith(
        "skinfluence: error: argument --noise: must be a number in (0, 1), got '2'"
    )
    assert len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


# -- mislabels -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_csv(tmp_path_factory):
    """300 rows: 4 numeric columns (some missing), a text column, a label, 10% flipped."""
    X, y = make_classification(
        n_samples=300,
        n_features=4,
        n_informative=4,
        n_redundant=0,
        n_clusters_per_class=1,
        class_sep=2.0,
        flip_y=0.0,
        random_state=0,
    )
    labels = np.where(y == 1, "spam", "ham")
    noisy, flipped = flip_labels(labels, 0.1, random_state=0)
    color = np.where(X[:, 0] > 0, "red", "blue")
    path = tmp_path_factory.mktemp("data") / "emails.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["f1", "f2", "f3", "f4", "color", "label"])
        for i in range(300):
            cells = [f"{v:.6f}" for v in X[i]]
            if i % 37 == 0:
                cells[1] = ""  # missing numbers are imputed
            w.writerow([*cells, "" if i % 50 == 0 else color[i], noisy[i]])
    return path, flipped, noisy


def _ranked_rows(stdout):
    return [
        (int(r), int(row), lab, pred)
        for r, row, lab, pred in re.findall(
            r"^\s+(\d+)\s+(\d+)  (\S+)\s+(\S+)\s+\S+$", stdout, re.M
        )
    ]


def test_mislabels_ranks_flipped_rows_first(good_csv, tmp_path):
    path, flipped, noisy = good_csv
    out, plot = tmp_path / "ranked.csv", tmp_path / "scores.png"
    res = run("mislabels", path, "--target", "label", "--top", "5", "--out", out, "--plot", plot)
    assert res.returncode == 0, res.stderr
    assert "300 rows, 4 numeric and 1 categorical feature columns" in res.stdout
    assert f"score: {AUTO['linear']} (auto)" in res.stdout
    shown = _ranked_rows(res.stdout)
    assert [r[0] for r in shown] == [1, 2, 3, 4, 5]
    assert all(lab == noisy[row] for _, row, lab, _ in shown)

    with open(out, newline="") as fh:
        ranked = list(csv.DictReader(fh))
    assert list(ranked[0]) == [
        "rank",
        "row",
        "score",
        "predicted",
        "f1",
        "f2",
        "f3",
        "f4",
        "color",
        "label",
    ]
    assert [int(r["rank"]) for r in ranked] == list(range(1, 301))
    assert sorted(int(r["row"]) for r in ranked) == list(range(300))
    scores = [float(r["score"]) for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert [(int(r["row"])) for r in ranked[:5]] == [row for _, row, _, _ in shown]
    assert all(r["label"] == noisy[int(r["row"])] for r in ranked)
    # well-separated classes: the top 10% of the ranking is mostly the flipped rows
    top = [int(r["row"]) for r in ranked[:30]]
    assert flipped[top].mean() > 0.8
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_mislabels_without_pandas_gives_the_same_ranking(good_csv, tmp_path):
    path, *_ = good_csv
    with_pd, without = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run("mislabels", path, "--target", "label", "--out", with_pd).returncode == 0
    code = (
        "import sys, skinfluence.cli as c; c._pandas = lambda: None; "
        f"sys.exit(c.main(['mislabels', {str(path)!r}, '--target', 'label', "
        f"'--out', {str(without)!r}]))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert with_pd.read_text() == without.read_text()


def test_mislabels_method_and_drop(good_csv):
    path, *_ = good_csv
    res = run(
        "mislabels", path, "--target", "label", "--method", "loss", "--drop", "color", "--top", "3"
    )
    assert res.returncode == 0, res.stderr
    assert "4 numeric and 0 categorical" in res.stdout
    assert "score: loss," in res.stdout
    assert len(_ranked_rows(res.stdout)) == 3


BAD = {
    "missing file": (None, ["--target", "y"], "no such file"),
    "empty file": ("", ["--target", "y"], "is empty"),
    "header only": ("a,b,y\n", ["--target", "y"], "no data rows"),
    "missing target": (
        "a,b,y\n1,2,0\n3,4,1\n",
        ["--target", "label"],
        "target column 'label' not found; columns are: a, b, y",
    ),
    "single class": ("a,y\n1,x\n2,x\n3,x\n", ["--target", "y"], "single class (only 'x')"),
    "continuous target": (
        "a,y\n" + "".join(f"{i},{i * 0.37:.2f}\n" for i in range(80)),
        ["--target", "y"],
        "not a continuous target",
    ),
    "identifier column": (
        "name,a,y\n" + "".join(f"id{i},{i % 7},{i % 2}\n" for i in range(80)),
        ["--target", "y"],
        "column 'name' cannot be encoded",
    ),
    "empty column": (
        "a,b,y\n1,,0\n2,NA,1\n3,,0\n",
        ["--target", "y"],
        "column 'b' has no values; leave it out with --drop b",
    ),
    "infinite value": ("a,y\n1,0\ninf,1\n3,0\n", ["--target", "y"], "infinite values"),
    "ragged row": ("a,y\n1,0\n2,1,5\n", ["--target", "y"], "Expected 2 fields in line 3"),
    "duplicate names": ("a,a,y\n1,2,0\n3,4,1\n", ["--target", "y"], "duplicate column names: a"),
    "not text": (b"\x89PNG\r\n\x1a\n\xff\xfe", ["--target", "y"], "is not UTF-8 text"),
    "unknown drop": ("a,y\n1,0\n2,1\n", ["--target", "y", "--drop", "b"], "unknown column(s): b"),
    "bad top": (
        "a,y\n1,0\n2,1\n",
        ["--target", "y", "--top", "0"],
        "--top: must be an integer >= 1, got '0'",
    ),
    "rare class": (
        "a,y\n" + "".join(f"{i},{'x' if i < 3 else i % 2}\n" for i in range(40)),
        ["--target", "y"],
        "class 'x' has only 3 rows, fewer than the 5 folds",
    ),
    "bad cv": ("a,y\n1,0\n2,1\n", ["--target", "y", "--cv", "1"], "--cv: must be an integer >= 2"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_mislabels_bad_input_is_one_line_and_exit_2(case, tmp_path):
    content, args, message = BAD[case]
    path = tmp_path / "data.csv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    res = run("mislabels", path, *args)
    assert res.returncode == 2, res.stdout
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("skinfluence: error: ")
    assert message in lines[0]


def test_mislabels_rows_without_a_label_are_left_out(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.csv"
    rows = [f"{rng.normal():.4f},{i % 2}" for i in range(40)] + ["0.5,", "0.7,NA"]
    path.write_text("a,y\n" + "\n".join(rows) + "\n")
    out = tmp_path / "r.csv"
    res = run("mislabels", path, "--target", "y", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "2 rows without a 'y' label are left out" in res.stderr
    assert "40 rows" in res.stdout
    assert len(out.read_text().splitlines()) == 41


def test_mislabels_with_the_mlp(good_csv, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    path, flipped, noisy = good_csv
    out = tmp_path / "ranked.csv"
    res = run(
        "mislabels", path, "--target", "label", "--model", "mlp", "--epochs", "300", "--out", out
    )
    assert res.returncode == 0, res.stderr
    assert "DeprecationWarning" not in res.stderr and "deprecated" not in res.stderr
    assert "model: mlp, 290 parameters" in res.stdout  # (4 numbers + 2 colours + 1) x 32 + 33 x 2
    assert f"score: {AUTO['torch']} (auto)" in res.stdout
    with open(out, newline="") as fh:
        ranked = list(csv.DictReader(fh))
    assert all(r["label"] == noisy[int(r["row"])] for r in ranked)
    assert {r["predicted"] for r in ranked} <= {"ham", "spam"}
    top = [int(r["row"]) for r in ranked[:30]]
    assert flipped[top].mean() > 0.8
    same = run("mislabels", path, "--target", "label", "--model", "mlp", "--epochs", "300")
    assert same.stdout == res.stdout.split("\nwrote")[0]  # seeded: the same ranking


def test_mislabels_unknown_model_is_an_argparse_error(good_csv):
    path, *_ = good_csv
    res = run("mislabels", path, "--target", "label", "--model", "forest")
    assert res.returncode == 2
    assert "invalid choice: 'forest'" in res.stderr
