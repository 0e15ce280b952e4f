"""Display objects drawn with the Agg backend: what is on the axes, and how much of it."""

import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from skinfluence import InfluenceExplainer
from skinfluence.datasets import flip_labels
from skinfluence.metrics import detection_curve
from skinfluence.plotting import InfluenceDisplay, MislabelDisplay, SelfInfluenceDisplay

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X_train, y_train = X[:300], y[:300]
    y_noisy, flipped = flip_labels(y_train, 0.1, random_state=0)
    ex = InfluenceExplainer(LogisticRegression(C=0.1, tol=1e-8, max_iter=5000)).fit(
        X_train, y_noisy
    )
    return ex, X_train, y_noisy, flipped, X[400:401], y[400:401]


def _labels_top_down(ax):
    ticks = ax.get_yticks()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    return [lab for _, lab in sorted(zip(ticks, labels, strict=True), reverse=True)]


# -- InfluenceDisplay ------------------------------------------------------------------
def test_influence_images_show_k_helpful_and_k_harmful_with_values(digits):
    ex, X_train, y_noisy, _, x, y = digits
    res = ex.most_influential(x, y, k=4)
    disp = InfluenceDisplay.from_explainer(
        ex, x, y, X_train=X_train, y_train=y_noisy, k=4, image_shape=(8, 8)
    )
    assert disp.axes_.shape == (2, 4)
    assert sum(len(a.images) for a in disp.axes_.flat) == 8
    assert len(disp.test_ax_.images) == 1
    np.testing.assert_array_equal(disp.test_ax_.images[0].get_array(), x.reshape(8, 8))
    pred = ex.predict(x)[0]
    assert disp.test_ax_.get_title() == f"test point\ny={y[0]}\npredicted {pred}"
    # above each image: the change of the test loss if that point is removed,
    # -removal_weights_[i] * I_up,loss, helpful row first
    values = np.concatenate([res.helpful_values[0], res.harmful_values[0]])
    idx = np.concatenate([res.helpful_indices[0], res.harmful_indices[0]])
    effects = -ex.removal_weights_[idx] * values
    assert [t.get_text() for t in disp.texts_] == [f"{v:+.4g}" for v in effects]
    assert [a.get_title() for a in disp.axes_.flat] == [f"{v:+.4g}" for v in effects]
    assert (effects[:4] > 0).all() and (effects[4:] < 0).all()
    # each image is that training point, labelled with its index and training label
    i = res.harmful_indices[0, 2]
    np.testing.assert_array_equal(disp.axes_[1, 2].images[0].get_array(), X_train[i].reshape(8, 8))
    assert disp.axes_[1, 2].get_xlabel() == f"#{i}\n(y={y_noisy[i]})"
    assert disp.axes_[0, 0].get_ylabel() == "most helpful"
    assert disp.axes_[1, 0].get_ylabel() == "most harmful"
    assert disp.caption_.get_text().startswith("numbers:\nchange of")
    assert not disp.ax_.axison  # the bounding axes only holds the grid
    assert disp.figure_ is disp.ax_.figure
    assert len(disp.figure_.axes) == 1 + 8 + 1 + 1  # hidden parent, images, test, caption


def test_influence_images_in_a_given_axes(digits):
    ex, X_train, *_, x, y = digits
    fig, (left, right) = plt.subplots(1, 2)
    disp = InfluenceDisplay.from_explainer(
        ex, x, y, X_train=X_train, k=2, image_shape=(8, 8), ax=right
    )
    assert disp.ax_ is right and disp.figure_ is fig
    # the two original axes + the test image + 2 x 2 training images
    assert len(fig.axes) == 2 + 1 + 1 + 4  # two given axes, test, caption, images
    assert left.axison and not right.axison


def test_influence_bars_without_image_shape(digits):
    ex, X_train, y_noisy, _, x, y = digits
    res = ex.most_influential(x, y, k=3)
    disp = InfluenceDisplay.from_explainer(ex, x[0], y[0], y_train=y_noisy, k=3)
    assert disp.axes_ is None and disp.test_ax_ is None
    assert len(disp.bars_) == 6
    values = np.concatenate([res.helpful_values[0], res.harmful_values[0]])
    np.testing.assert_allclose([b.get_width() for b in disp.bars_], values)
    idx = np.concatenate([res.helpful_indices[0], res.harmful_indices[0]])
    effects = -ex.removal_weights_[idx] * values
    assert [t.get_text().strip() for t in disp.texts_] == [f"{v:+.4g}" for v in effects]
    # most helpful at the top of the chart
    idx = np.concatenate([res.helpful_indices[0], res.harmful_indices[0]])
    assert _labels_top_down(disp.ax_) == [f"#{i} (y={y_noisy[i]})" for i in idx]
    assert f"(y={y[0]}, predicted {ex.predict(x)[0]})" in disp.ax_.get_title()
    assert "positive = harmful" in disp.ax_.get_xlabel()


def test_influence_from_scores_by_hand():
    influence = np.array([3.0, -1.0, 0.5, -4.0, 2.0])
    disp = InfluenceDisplay.from_scores(influence, k=2)
    np.testing.assert_array_equal(disp.helpful_indices, [3, 1])
    np.testing.assert_array_equal(disp.harmful_indices, [0, 4])
    np.testing.assert_allclose([b.get_width() for b in disp.bars_], [-4, -1, 3, 2])
    colors = [b.get_facecolor() for b in disp.bars_]
    assert colors[0] == colors[1] != colors[2] == colors[3]
    assert _labels_top_down(disp.ax_) == ["#3", "#1", "#0", "#4"]


def test_influence_from_scores_images():
    rng = np.random.default_rng(0)
    X_train = rng.random((6, 4))
    disp = InfluenceDisplay.from_scores(
        [0.0, 1.0, -2.0, 3.0, -4.0, 5.0],
        X_train=X_train,
        k=1,
        image_shape=(2, 2),
        test_sample=np.zeros(4),
    )
    np.testing.assert_array_equal(disp.axes_[0, 0].images[0].get_array(), X_train[4].reshape(2, 2))
    np.testing.assert_array_equal(disp.axes_[1, 0].images[0].get_array(), X_train[5].reshape(2, 2))
    assert disp.test_ax_.get_title() == "test point"


def test_influence_images_with_a_channel_axis():
    # (n, C, H, W) inputs, as a CNN takes them: one channel is drawn as an image
    X_train = np.arange(6 * 9, dtype=float).reshape(6, 1, 3, 3)
    disp = InfluenceDisplay.from_scores(
        [0.0, 1.0, -2.0, 3.0, -4.0, 5.0], X_train=X_train, k=2, image_shape=(3, 3)
    )
    assert disp.axes_.shape == (2, 2) and disp.test_ax_ is None
    np.testing.assert_array_equal(disp.axes_[1, 0].images[0].get_array(), X_train[5, 0])


def test_influence_errors(digits):
    ex, X_train, y_noisy, _, x, y = digits
    with pytest.raises(ValueError, match="image_shape needs X_train"):
        InfluenceDisplay.from_scores([1.0, -2.0], k=1, image_shape=(1, 1))
    with pytest.raises(ValueError, match="holds 49 values"):
        InfluenceDisplay.from_explainer(ex, x, y, X_train=X_train, image_shape=(7, 7))
    with pytest.raises(ValueError, match="one test point"):
        InfluenceDisplay.from_explainer(ex, X_train[:2], y_noisy[:2])
    with pytest.raises(ValueError, match="X_train has 10 rows"):
        InfluenceDisplay.from_explainer(ex, x, y, X_train=X_train[:10])
    with pytest.raises(ValueError, match="y_train has 10 labels"):
        InfluenceDisplay.from_explainer(ex, x, y, y_train=y_noisy[:10])
    with pytest.raises(ValueError, match="k must be"):
        InfluenceDisplay.from_scores([1.0, 2.0], k=3)
    with pytest.raises(ValueError, match="NaN"):
        InfluenceDisplay.from_scores([1.0, np.nan], k=1)


# -- MislabelDisplay -------------------------------------------------------------------
def test_mislabel_curves_by_hand():
    flipped = [True, False, True, False, False]
    scores = {"good": [0.9, 0.8, 0.7, 0.5, 0.3], "bad": [0.1, 0.8, 0.2, 0.5, 0.3]}
    disp = MislabelDisplay.from_scores(flipped, scores)
    assert list(disp.lines_) == ["good", "bad"]
    np.testing.assert_allclose(disp.lines_["good"].get_ydata(), [0, 0.5, 0.5, 1, 1, 1])
    np.testing.assert_allclose(disp.lines_["bad"].get_ydata(), [0, 0, 0, 0, 0.5, 1])
    np.testing.assert_allclose(disp.lines_["good"].get_xdata(), [0, 0.2, 0.4, 0.6, 0.8, 1])
    np.testing.assert_allclose(disp.chance_level_.get_ydata(), [0, 1])
    assert len(disp.ax_.lines) == 3
    # ROC AUC in the legend: good = 5/6 (0.7 loses to 0.8 only), bad = 0
    legend = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert legend == ["good (ROC AUC 0.833)", "bad (ROC AUC 0.000)", "random (expected)"]
    assert disp.ax_.get_title() == "Mislabel detection"
    assert disp.ax_.get_xlabel() == "fraction of training data checked"


def test_mislabel_single_score_options():
    fig, ax = plt.subplots()
    disp = MislabelDisplay.from_scores(
        [True, False], [1.0, 0.0], ax=ax, max_fraction=0.4, plot_chance_level=False
    )
    assert disp.ax_ is ax and disp.figure_ is fig
    assert list(disp.lines_) == ["score"] and disp.chance_level_ is None
    assert len(ax.lines) == 1
    assert ax.get_xlim() == (0, 0.4)
    with pytest.raises(ValueError, match="empty dict"):
        MislabelDisplay.from_scores([True, False], {})


def test_mislabel_from_explainer_labels_auto(digits):
    ex, _, _, flipped, *_ = digits
    disp = MislabelDisplay.from_explainer(ex, flipped)
    auto = [name for name in disp.lines_ if name.endswith("(auto)")]
    assert len(auto) == 1 and len(disp.lines_) == 3
    _, expected = detection_curve(flipped, ex.mislabel_scores("loss"))
    np.testing.assert_allclose(disp.lines_["loss"].get_ydata(), expected)
    # auto already stands for one of the asked methods: one curve, not two
    name = auto[0].split(" ")[0]
    disp = MislabelDisplay.from_explainer(ex, flipped, methods=("auto", name))
    assert list(disp.lines_) == [auto[0]]
    with pytest.raises(ValueError, match="Unknown mislabel method"):
        MislabelDisplay.from_explainer(ex, flipped, methods=("magic",))


# -- SelfInfluenceDisplay --------------------------------------------------------------
def test_self_influence_histogram_flags_top_k():
    scores = np.array([0.1, 5.0, 0.3, 4.0, 0.2, 0.25])
    disp = SelfInfluenceDisplay.from_scores(scores, k=2, name="self-influence", bins=4)
    assert len(disp.patches_) == 4
    assert sum(p.get_height() for p in disp.patches_) == 6
    np.testing.assert_allclose(disp.flagged_marks_.get_xdata(), [5.0, 4.0])
    assert disp.threshold_line_.get_xdata()[0] == 4.0
    np.testing.assert_array_equal(disp.flagged, [False, True, False, True, False, False])
    assert disp.ax_.get_title() == "Distribution of self-influence"
    legend = [t.get_text() for t in disp.ax_.get_legend().get_texts()]
    assert legend == ["flagged (2)", "cut-off"]


def test_self_influence_flagged_mask_or_indices():
    scores = np.arange(10.0)
    by_idx = SelfInfluenceDisplay.from_scores(scores, flagged=[2, 7])
    np.testing.assert_allclose(by_idx.flagged_marks_.get_xdata(), [2.0, 7.0])
    assert by_idx.threshold_line_ is None  # a given mask has no threshold
    none = SelfInfluenceDisplay.from_scores(scores)
    assert none.flagged_marks_ is None and none.ax_.get_legend() is None
    with pytest.raises(ValueError, match="not both"):
        SelfInfluenceDisplay.from_scores(scores, flagged=[1], k=2)
    with pytest.raises(ValueError, match="out of range"):
        SelfInfluenceDisplay.from_scores(scores, flagged=[10])
    with pytest.raises(ValueError, match="shape"):
        SelfInfluenceDisplay.from_scores(scores, flagged=np.ones(3, bool))


def test_self_influence_from_explainer(digits):
    ex, _, _, flipped, *_ = digits
    disp = SelfInfluenceDisplay.from_explainer(ex, flagged=flipped, log=True)
    assert len(disp.flagged_marks_.get_xdata()) == flipped.sum()
    np.testing.assert_allclose(
        np.sort(disp.flagged_marks_.get_xdata()), np.sort(ex.self_influence()[flipped])
    )
    assert disp.ax_.get_xlabel() == "self-influence"
    assert disp.ax_.get_yscale() == "log"
    disp = SelfInfluenceDisplay.from_explainer(ex, method="loss", fraction=0.1)
    assert len(disp.flagged_marks_.get_xdata()) == 30
    assert disp.ax_.get_title() == "Distribution of loss"


# -- matplotlib stays optional --------------------------------------------------------
def test_importing_plotting_does_not_import_matplotlib():
    code = "import sys, skinfluence.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="requires matplotlib"):
        MislabelDisplay.from_scores([True, False], [1.0, 0.0])


# -- from the explainer alone, keywords passed through ---------------------------------
def test_influence_images_from_the_explainer_alone(digits):
    ex, X_train, y_noisy, _, x, y = digits
    given = InfluenceDisplay.from_explainer(
        ex, x, y, X_train=X_train, y_train=y_noisy, k=3, image_shape=(8, 8)
    )
    alone = InfluenceDisplay.from_explainer(ex, x, y, k=3, image_shape=(8, 8))
    for a, b in zip(given.axes_.flat, alone.axes_.flat, strict=True):
        np.testing.assert_array_equal(a.images[0].get_array(), b.images[0].get_array())
        assert a.get_xlabel() == b.get_xlabel() and "(y=" in b.get_xlabel()
    # a 1-d test row is one test point
    flat = InfluenceDisplay.from_explainer(ex, x[0], y[0], k=3)
    np.testing.assert_array_equal(flat.harmful_indices, alone.harmful_indices)


def test_influence_bars_from_a_frame_row_through_a_pipeline():
    pd = pytest.importorskip("pandas")
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 80
    df = pd.DataFrame(
        {"age": rng.normal(40, 10, n), "city": rng.choice(["a", "b", "c"], n)},
        index=[f"r{i}" for i in range(n)],
    )
    y = (df["age"] + 5 * (df["city"] == "a") + rng.normal(0, 5, n) > 42).to_numpy().astype(int)
    pipe = make_pipeline(
        make_column_transformer((StandardScaler(), ["age"]), (OneHotEncoder(), ["city"])),
        LogisticRegression(tol=1e-10, max_iter=1000),
    )
    ex = InfluenceExplainer(pipe).fit(df, y)
    row = df.loc["r3"]  # a pandas Series of mixed types
    disp = InfluenceDisplay.from_explainer(ex, row, y[3], k=2)
    ref = ex.most_influential(df.iloc[3:4], y[3:4], k=2)
    np.testing.assert_array_equal(disp.helpful_indices, ref.helpful_indices[0])
    np.testing.assert_array_equal(disp.harmful_values, ref.harmful_values[0])
    i = ref.helpful_indices[0, 0]
    assert _labels_top_down(disp.ax_)[0] == f"r{i} (y={y[i]})"  # the frame's row label
    assert f"predicted {ex.predict(df.iloc[3:4])[0]}" in disp.ax_.get_title()


def test_matplotlib_keywords_reach_the_artists(digits):
    from matplotlib.colors import to_rgba

    ex, _, _, flipped, x, y = digits
    bars = InfluenceDisplay.from_explainer(ex, x, y, k=2, color="tab:purple", alpha=0.5)
    assert all(b.get_facecolor() == to_rgba("tab:purple", 0.5) for b in bars.bars_)
    hist = SelfInfluenceDisplay.from_explainer(ex, name="my score", color="tab:olive")
    assert hist.patches_[0].get_facecolor() == to_rgba("tab:olive")
    assert hist.ax_.get_xlabel() == "my score"
    curves = MislabelDisplay.from_explainer(ex, flipped, methods=("loss",), linewidth=3.5)
    assert curves.lines_["loss"].get_linewidth() == 3.5
    images = InfluenceDisplay.from_explainer(ex, x, y, k=2, image_shape=(8, 8), alpha=0.3)
    assert images.axes_[0, 0].images[0].get_alpha() == 0.3


def _text_boxes(fig, hidden_ax):
    """Window extents of every visible, non-empty text, but the hidden parent axes'."""
    from matplotlib.text import Text

    fig.canvas.draw()  # runs the constrained layout
    renderer = fig.canvas.get_renderer()
    hidden = set(hidden_ax.findobj(Text)) - {
        t for a in fig.axes if a is not hidden_ax for t in a.findobj(Text)
    }
    return [
        (t.get_text(), t.get_window_extent(renderer))
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t not in hidden
    ]


@pytest.mark.parametrize("figsize", [(6, 3.5), (9, 4), (14, 5.5)])
def test_image_grid_text_never_overlaps(digits, figsize):
    ex, _, _, _, x, y = digits
    fig = plt.figure(figsize=figsize, layout="constrained")
    flagged = ex.find_mislabeled(k=30, method="loss")
    disp = InfluenceDisplay.from_explainer(
        ex, x, y, k=5, image_shape=(8, 8), flagged=flagged, ax=fig.add_subplot()
    )
    boxes = _text_boxes(fig, disp.ax_)
    # value titles and point labels, two row labels, the test title and the caption
    assert len(boxes) == 2 * 5 * 2 + 2 + 2
    for i, (text_a, a) in enumerate(boxes):
        for text_b, b in boxes[i + 1 :]:
            assert not a.overlaps(b), f"{text_a!r} overlaps {text_b!r} at figsize {figsize}"
    # and every text is inside the figure
    width, height = fig.canvas.get_width_height()
    for text, box in boxes:
        assert box.x0 >= -1 and box.y0 >= -1, text
        assert box.x1 <= width + 1 and box.y1 <= height + 1, text


def test_flagged_points_are_marked(digits):
    ex, X_train, y_noisy, _, x, y = digits
    res = ex.most_influential(x, y, k=3)
    flagged = [res.helpful_indices[0, 1], res.harmful_indices[0, 0]]
    disp = InfluenceDisplay.from_explainer(ex, x, y, k=3, image_shape=(8, 8), flagged=flagged)
    marked = np.array([[a.get_xlabel().endswith("flagged") for a in row] for row in disp.axes_])
    np.testing.assert_array_equal(marked, [[False, True, False], [True, False, False]])
    assert disp.axes_[0, 1].spines["left"].get_linewidth() == 3
    bars = InfluenceDisplay.from_explainer(ex, x, y, k=3, flagged=flagged)
    assert [b.get_hatch() for b in bars.bars_] == [None, "//", None, "//", None, None]
    mask = np.zeros(ex.n_train_, dtype=bool)
    mask[flagged] = True
    from_mask = InfluenceDisplay.from_scores(ex.influence(x, y)[0], k=3, flagged=mask)
    assert from_mask.harmful_flagged.tolist() == [True, False, False]


def test_bar_numbers_clear_of_bars_and_long_row_names():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    n = 120
    X = pd.DataFrame(
        rng.normal(size=(n, 3)),
        index=[f"Passenger number {i:03d}, a long name" for i in range(n)],
    )
    y = (X[0] - X[1] + rng.normal(0, 0.5, n) > 0).to_numpy().astype(int)
    ex = InfluenceExplainer(LogisticRegression(tol=1e-10)).fit(X, y)
    for row in (0, 5, 9):
        disp = InfluenceDisplay.from_explainer(ex, X.iloc[[row]], y[row : row + 1], k=5)
        fig = disp.figure_
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        numbers = [t.get_window_extent(renderer) for t in disp.texts_]
        others = [t.get_window_extent(renderer) for t in disp.ax_.get_yticklabels()]
        others += [bar.get_window_extent(renderer) for bar in disp.bars_]
        inside = disp.ax_.get_window_extent(renderer)
        for text, box in zip(disp.texts_, numbers, strict=True):
            assert inside.x0 - 1 <= box.x0 and box.x1 <= inside.x1 + 1, text.get_text()
            for other in others:
                # more than touching: a number starts where its neighbour bar ends (at 0)
                dx = min(box.x1, other.x1) - max(box.x0, other.x0)
                dy = min(box.y1, other.y1) - max(box.y0, other.y0)
                assert min(dx, dy) <= 0.5, f"{text.get_text()!r} at test row {row}"
        plt.close(fig)


# -- MislabelDisplay without known flips -------------------------------------------------
@pytest.fixture(scope="module")
def people():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    n = 150
    df = pd.DataFrame(
        {"age": rng.normal(40, 10, n), "city": rng.choice(["north", "south"], n)},
        index=pd.Index([f"p{i:03d}" for i in rng.permutation(n)], name="person"),
    )
    y = np.where(
        0.1 * (df["age"] - 40) + (df["city"] == "north") + rng.normal(0, 1, n) > 0.5, "yes", "no"
    )
    from sklearn.compose import make_column_transformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pipe = make_pipeline(
        make_column_transformer((StandardScaler(), ["age"]), (OneHotEncoder(), ["city"])),
        LogisticRegression(tol=1e-10, max_iter=2000),
    )
    return InfluenceExplainer(pipe).fit(df, y), df, y


def test_influence_display_names_points_by_the_training_index(people):
    ex, df, y = people  # its index is a permutation of the labels: label != position
    flagged = ex.find_mislabeled(k=3)
    bars = InfluenceDisplay.from_explainer(ex, df.iloc[[7]], y[7:8], k=3, flagged=flagged)
    idx = np.concatenate([bars.helpful_indices, bars.harmful_indices])
    expected = [f"{df.index[i]} (y={y[i]})" + (" flagged" if i in flagged else "") for i in idx]
    assert _labels_top_down(bars.ax_) == expected
    np.testing.assert_array_equal(bars.helpful_rows, df.index[bars.helpful_indices])
    # image mode writes the same names under the images
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    pixels = pd.DataFrame(rng.normal(size=(40, 4)), index=[f"img{i}" for i in rng.permutation(40)])
    labels = (pixels[0] + pixels[3] > 0).to_numpy().astype(int)
    ex_img = InfluenceExplainer(LogisticRegression(tol=1e-10)).fit(pixels, labels)
    imgs = InfluenceDisplay.from_explainer(
        ex_img, pixels.iloc[[0]], labels[:1], k=2, image_shape=(2, 2)
    )
    first = pixels.index[imgs.helpful_indices[0]]
    assert imgs.axes_[0, 0].get_xlabel() == f"{first}\n(y={labels[imgs.helpful_indices[0]]})"
    # without an index (a plain array) the positions are written
    plain = InfluenceDisplay.from_scores(ex.influence(df.iloc[[7]], y[7:8])[0], k=2)
    assert _labels_top_down(plain.ax_)[0] == f"#{plain.helpful_indices[0]}"


def test_suspects_view_without_known_flips(people):
    ex, df, y = people
    disp = MislabelDisplay.from_explainer(ex, methods=["loss"], n_suspects=6, bins=20)
    scores = ex.mislabel_scores("loss")
    top = np.argsort(-scores, kind="stable")[:6]
    dist, bars = disp.axes_
    assert len(disp.patches_) == 20
    # the flagged set is the listed suspects; the cut-off is the lowest flagged score
    np.testing.assert_array_equal(np.flatnonzero(disp.flagged), np.sort(top))
    assert disp.threshold_line_.get_xdata()[0] == pytest.approx(scores[top].min())
    np.testing.assert_allclose(np.sort(disp.flagged_marks_.get_xdata()), np.sort(scores[top]))
    np.testing.assert_allclose([b.get_width() for b in disp.bars_], scores[top])
    pred = ex.predict(df.iloc[top])
    expected = [f"{df.index[i]}: y={y[i]}, predicted {p}" for i, p in zip(top, pred, strict=True)]
    assert _labels_top_down(bars) == expected
    assert bars.get_title() == f"Top 6 suspects (6 flagged of {ex.n_train_})"
    assert disp.lines_ == {} and disp.chance_level_ is None


def test_suspects_view_sizes_the_flagged_set_and_passes_keywords(people):
    ex, _, _ = people
    disp = MislabelDisplay.from_explainer(
        ex, methods=["loss"], fraction=0.2, n_suspects=5, color="tab:olive"
    )
    from matplotlib.colors import to_rgba

    assert disp.flagged.sum() == 30
    # the 5 listed are among the 30 flagged: all drawn in the flagged colour
    assert all(b.get_facecolor() == to_rgba("tab:red") for b in disp.bars_)
    few = MislabelDisplay.from_explainer(ex, methods=["loss"], k=2, n_suspects=5)
    assert [b.get_facecolor() == to_rgba("tab:red") for b in few.bars_] == [True] * 2 + [False] * 3

    assert disp.patches_[0].get_facecolor() == to_rgba("tab:olive")
    auto = MislabelDisplay.from_explainer(ex)
    assert auto.name == "cv_blend_loss (auto)"
    np.testing.assert_allclose(auto.scores, ex.mislabel_scores("auto"))


def test_suspects_view_errors(people):
    ex, _, _ = people
    with pytest.raises(ValueError, match="n_suspects must be an int"):
        MislabelDisplay.from_explainer(ex, methods=["loss"], n_suspects=0)
    with pytest.raises(ValueError, match="k or fraction"):
        MislabelDisplay.from_explainer(ex, methods=["loss"], k=3, fraction=0.1)
    with pytest.raises(ValueError, match="known flips"):
        MislabelDisplay.from_explainer(ex, np.zeros(ex.n_train_, bool), k=3)
