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


@pytest.fixture
def no_work(monkeypatch):
    """Reading the table or fitting the explainer fails the test: checks must come first."""
    from skinfluence import InfluenceExplainer, cli

    monkeypatch.setattr(cli, "read_csv", lambda *a, **k: pytest.fail("read the table first"))
    monkeypatch.setattr(InfluenceExplainer, "fit", lambda *a, **k: pytest.fail("fitted first"))


def run_here(capsys, *args):
    """The command in this process (no interpreter start-up): ``(status, stdout, stderr)``."""
    from skinfluence import cli

    try:
        status = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


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
            r"^\s+(\d+)\s+(\d+)  (\S+)\s+(\S+)\s+\S+ \*?$", stdout, re.M
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
        "flagged",
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
    # the self-sized set: as many as the command says, most of them flips, marked * too
    marked = [int(r["row"]) for r in ranked if r["flagged"] == "1"]
    assert f"flagged: {len(marked)} rows" in res.stdout
    assert flipped[marked].mean() > 0.8 and flipped[marked].sum() > 0.7 * flipped.sum()
    stars = re.findall(r"^\s+\d+\s+(\d+) .* \*$", res.stdout, re.M)
    assert [int(r) for r in stars] == [row for row in marked if row in [x[1] for x in shown]]
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_mislabels_without_pandas_gives_the_same_ranking(good_csv, tmp_path):
    path, *_ = good_csv
    with_pd, without = tmp_path / "a.csv", tmp_path / "b.csv"
    assert run("mislabels", path, "--target", "label", "--out", with_pd).returncode == 0
    code = (
        "import sys, skinfluence.cli as c, skinfluence.tabular as t; t._pandas = lambda: None; "
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
    # the self-sized set: as many as the command says, most of them flips, marked * too
    marked = [int(r["row"]) for r in ranked if r["flagged"] == "1"]
    assert f"flagged: {len(marked)} rows" in res.stdout
    assert flipped[marked].mean() > 0.8 and flipped[marked].sum() > 0.7 * flipped.sum()
    same = run("mislabels", path, "--target", "label", "--model", "mlp", "--epochs", "300")
    assert same.stdout == res.stdout.split("\nwrote")[0]  # seeded: the same ranking


def test_mlp_hessian_not_definite_at_the_default_damping_is_refitted_with_the_advice(
    tmp_path, capsys
):
    """A net trained 100 epochs on noisy labels: its exact Hessian is indefinite at the
    default damping 0.01. Without --damping the command refits with the damping the
    error advises, says so, and ranks exactly as with that --damping given; a damping
    the user chose is not changed: the error says what would work."""
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(240, 3))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    y = np.where(rng.random(240) < 0.35, rng.integers(0, 2, 240), y)
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(
            [["a", "b", "c", "y"], *[[*r, v] for r, v in zip(X, y, strict=True)]]
        )
    base = ("mislabels", path, "--target", "y", "--model", "mlp", "--epochs", "100")

    status, out, err = run_here(capsys, *base, "--out", tmp_path / "auto.csv")
    assert status == 0, err
    # the main fit's advice first, then a fold's, if a fold needs more
    notes = re.findall(
        r"not positive definite with damping (\S+); refitting with damping (\S+),", err
    )
    assert notes and notes[0][0] == "0.01", err
    assert all(float(a) < float(b) for a, b in notes)
    advised = float(notes[-1][1])
    status, out_given, err = run_here(
        capsys, *base, "--damping", advised, "--out", tmp_path / "given.csv"
    )
    assert status == 0 and "refitting" not in err, err
    assert (tmp_path / "auto.csv").read_text() == (tmp_path / "given.csv").read_text()

    status, _, err = run_here(capsys, *base, "--damping", "0.01")
    assert status != 0 and "refitting" not in err
    assert f"Pass damping={notes[0][1]}" in err


def test_mislabels_unknown_model_is_an_argparse_error(good_csv):
    path, *_ = good_csv
    res = run("mislabels", path, "--target", "label", "--model", "forest")
    assert res.returncode == 2
    assert "invalid choice: 'forest'" in res.stderr


# -- hygiene: what goes back out is inert, outputs are checked first -------------------------
@pytest.fixture
def hostile_csv(tmp_path):
    """Cells a spreadsheet would run as formulas, and labels with terminal escapes."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    path = tmp_path / "hostile.csv"
    notes = ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "plain", "-x"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["x", "=note", "label"])
        for i in range(40):
            label = "\x1b[31mred" if x[i] + 0.3 * rng.normal() > 0 else "=blue"
            w.writerow([f"{x[i]:.4f}", notes[i % len(notes)], label])
    return path


def test_formula_cells_are_escaped_and_escapes_not_printed(hostile_csv, tmp_path):
    out = tmp_path / "ranked.csv"
    res = run("mislabels", hostile_csv, "--target", "label", "--method", "loss", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "\x1b" not in res.stdout and "\x1b" not in res.stderr
    assert "\\x1b[31mred" in res.stdout  # shown, not executed
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["rank", "row", "score", "predicted", "flagged", "x", "'=note", "label"]
    cells = {c for r in rows[1:] for c in r}
    assert {'\'=HYPERLINK("http://x")', "'+1+1", "'@SUM(A1)", "'-x", "'=blue"} <= cells
    assert "-2" in cells  # a number stays a number
    bad = [c for c in cells if c[:1] in "=+@" or (c[:1] == "-" and not _is_float(c))]
    assert not bad
    assert any(float(r[2]) > 0 for r in rows[1:])  # scores are plain numbers


def _is_float(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_out_may_not_overwrite_the_input(hostile_csv, capsys, no_work):
    before = hostile_csv.read_bytes()
    status, _, err = run_here(
        capsys, "mislabels", hostile_csv, "--target", "label", "--out", hostile_csv
    )
    assert status == 2
    assert "is the input file" in err and len(err.strip().splitlines()) == 1
    assert hostile_csv.read_bytes() == before


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_bad_output_paths_are_refused_before_any_work(
    hostile_csv, tmp_path, option, capsys, no_work
):
    missing_dir = tmp_path / "no" / "such" / "dir" / "f.csv"
    status, out, err = run_here(
        capsys, "mislabels", hostile_csv, "--target", "label", option, missing_dir
    )
    assert status == 2 and "does not exist" in err
    assert out == ""  # nothing was computed or printed first
    status, out, err = run_here(
        capsys, "mislabels", hostile_csv, "--target", "label", option, tmp_path
    )
    assert status == 2 and "names a directory" in err and out == ""


def test_demo_plots_path_that_is_a_file_is_refused_first(tmp_path, capsys, no_work):
    path = tmp_path / "afile"
    path.write_text("x")
    status, out, err = run_here(capsys, "demo", "--plots", path)
    assert status == 2 and "is not a directory" in err and out == ""


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    from skinfluence import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_demo", interrupted)
    assert cli.main(["demo"]) == 130
    err = capsys.readouterr().err
    assert err == "skinfluence: interrupted\n"


def test_escape_cell_and_printable():
    from skinfluence.tabular import escape_cell, printable

    assert escape_cell("=1+2") == "'=1+2" and escape_cell("\tx") == "'\tx"
    assert escape_cell("-1.5e3") == "-1.5e3" and escape_cell("+3") == "+3"
    assert escape_cell("a=b") == "a=b" and escape_cell(3) == "3"
    assert printable("a\x1b[2Jb\x07\nc\td") == "a\\x1b[2Jb\\x07\\x0ac\\x09d"
    assert printable("abc\u202eevil") == "abc\\u202eevil"  # a bidi override
    assert printable("caf\u00e9 \u2014 ok") == "caf\u00e9 \u2014 ok"


def test_more_output_path_mistakes_are_refused_first(hostile_csv, tmp_path, capsys, no_work):
    cases = [
        (["--out", ""], "--out needs a file name"),
        (["--out", f"{tmp_path}/newdir/"], "names a directory"),
        (["--plot", tmp_path / "p.xyz"], "give a file name ending in one of"),
        (["--plot", tmp_path / "noext"], "give a file name ending in one of"),
    ]
    for extra, message in cases:
        status, out, err = run_here(
            capsys, "mislabels", hostile_csv, "--target", "label", "--method", "loss", *extra
        )
        assert status == 2 and message in err, (extra, err)
        assert out == ""
    assert not (tmp_path / "newdir").exists()


def test_a_pipe_is_refused_not_half_read(good_csv):
    path, _, _ = good_csv
    res = subprocess.run(  # input= feeds stdin through a pipe, as `cat file |` does
        [sys.executable, "-m", "skinfluence", "mislabels", "/dev/stdin", "--target", "label"],
        input=path.read_text(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 2 and "is not a regular file" in res.stderr


def test_added_columns_are_prefixed_when_the_input_has_them(tmp_path):
    path = tmp_path / "clash.csv"
    rng = np.random.default_rng(1)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "score", "label"])
        for i in range(40):
            w.writerow([i, f"{rng.normal():.3f}", "a" if rng.random() < 0.5 else "b"])
    out = tmp_path / "ranked.csv"
    res = run("mislabels", path, "--target", "label", "--method", "loss", "--out", out)
    assert res.returncode == 0, res.stderr
    assert "prefixed with skinfluence_" in res.stderr
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:4] == [
        "skinfluence_rank",
        "skinfluence_row",
        "skinfluence_score",
        "skinfluence_predicted",
    ]
    scores = [float(r["skinfluence_score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # the suspicion score, not the input's
    assert {r["rank"] for r in rows} == {str(i) for i in range(40)}


def test_values_too_large_to_scale_are_named(tmp_path, capsys):
    path = tmp_path / "huge.csv"
    path.write_text("a,b,label\n" + "".join(f"{i},{(-1) ** i}e308,{i % 2}\n" for i in range(20)))
    status, _, err = run_here(capsys, "mislabels", path, "--target", "label", "--method", "loss")
    assert status == 2 and "column 'b' holds values too large to scale" in err


def test_seed_range(capsys):
    status, _, err = run_here(capsys, "demo", "--seed", "99999999999")
    assert status == 2 and "argument --seed: must be an integer in [0, 4294967295]" in err


HEAVY = ("sklearn", "scipy", "torch", "matplotlib", "pandas")


@pytest.mark.parametrize("argv", [["--help"], ["mislabels", "--help"], ["demo", "--help"]])
def test_help_imports_nothing_heavy(argv):
    """``--help`` answers without importing scikit-learn, scipy, torch, matplotlib or pandas."""
    code = (
        "import sys\n"
        "from skinfluence.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY:', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage:" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "HEAVY: []"


def test_package_attributes_load_on_first_use():
    code = (
        "import sys, skinfluence\n"
        "assert 'skinfluence.explainer' not in sys.modules\n"
        "from skinfluence import InfluenceExplainer, SingularHessianError\n"
        "from skinfluence.explainer import InfluenceExplainer as E\n"
        "from skinfluence.solvers import SingularHessianError as S\n"
        "assert InfluenceExplainer is E and SingularHessianError is S\n"
        "assert 'InfluenceExplainer' in dir(skinfluence)\n"
        "try:\n"
        "    skinfluence.nope\n"
        "except AttributeError as e:\n"
        "    assert 'nope' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- progress and the model choice -----------------------------------------------------------
def test_progress_on_a_terminal_and_quiet_when_piped(good_csv):
    import fcntl
    import os
    import pty
    import struct
    import termios

    path, *_ = good_csv
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "skinfluence", "mislabels", str(path), "--target", "label"],
            stdout=subprocess.PIPE,
            stderr=child,
            timeout=300,
        )
        os.close(child)
        chunks = []
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # the terminal's other end is closed: all read
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(main)
    assert proc.returncode == 0
    shown = b"".join(chunks).decode("utf-8", "replace")
    for stage in ("reading", "encoding", "fitting logreg", "scoring"):
        # every stage's bar is drawn, and filled when the stage is done
        assert re.search(rf"{stage}: 100%", shown), (stage, shown)
    assert "cross-fit:" in shown and "fold" in shown  # the explainer's own, cleared when done
    piped = run("mislabels", path, "--target", "label")
    assert piped.returncode == 0 and piped.stderr == ""


def _pooled_cv_log_loss(model, X, y, seed):
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    return log_loss(y, cross_val_predict(model, X, y, cv=folds, method="predict_proba"))


@pytest.mark.parametrize("shape", ["rings", "line"])
def test_model_auto_picks_what_cross_validation_by_hand_picks(shape, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    import argparse

    import torch
    from sklearn.datasets import make_circles

    from skinfluence.cli import MODELS
    from skinfluence.tabular import encode_columns, read_csv

    if shape == "rings":  # no line separates them: the net wins
        X, y = make_circles(n_samples=240, noise=0.08, factor=0.5, random_state=0)
    else:  # a line and few rows: the net overfits
        X, y = make_classification(
            n_samples=80,
            n_features=8,
            n_informative=2,
            n_redundant=0,
            flip_y=0.15,
            random_state=1,
        )
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*(f"x{j}" for j in range(X.shape[1])), "y"])
        w.writerows([*(f"{v:.6f}" for v in row), lab] for row, lab in zip(X, y, strict=True))
    res = run("mislabels", path, "--target", "y", "--model", "auto", "--epochs", "300")
    assert res.returncode == 0, res.stderr
    picked = re.search(r"model: auto picked (\w+) by 5-fold", res.stdout).group(1)
    printed = dict(re.findall(r"(logreg|mlp) (\d\.\d+)", res.stdout.split("picked")[1]))

    # by hand: the command line's own pipelines, scikit-learn's cross_val_predict
    header, columns = read_csv(str(path), text_columns={"y"})
    Xe, ye, kinds, _ = encode_columns(header, columns, "y")
    codes = np.unique(ye, return_inverse=True)[1]
    args = argparse.Namespace(C=1.0, epochs=300, seed=0)
    by_hand = {}
    for name in ("logreg", "mlp"):
        torch.manual_seed(0)
        by_hand[name] = _pooled_cv_log_loss(MODELS[name](Xe, kinds, 2, args), Xe, codes, 0)
    assert picked == min(by_hand, key=by_hand.get)
    assert abs(by_hand["logreg"] - by_hand["mlp"]) > 0.05  # a clear choice, not a seed's
    assert float(printed["logreg"]) == pytest.approx(by_hand["logreg"], abs=2e-4)
    assert f"model: {picked}," in res.stdout
