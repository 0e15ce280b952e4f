"""Display objects for influence and mislabel detection, in scikit-learn's style.

Each Display is built with ``from_explainer`` (from a fitted
:class:`~skinfluence.InfluenceExplainer`) or ``from_scores`` (from numbers you already
have), draws with ``plot(ax=None, ...)`` and keeps ``ax_`` and ``figure_``.
matplotlib is imported only when something is drawn.

Sign convention (Koh & Liang): influence ``I_up,loss`` > 0 is harmful, < 0 helpful.
"""

import numbers

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils import Bunch

from skinfluence.indexing import as_mask, take_rows
from skinfluence.metrics import detection_curve, roc_auc
from skinfluence.mislabel import METHODS, auto_method, check_cut, rank_suspects


def check_matplotlib_support(caller_name):
    """Raise an ImportError naming ``caller_name`` when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ImportError(
            f"{caller_name} requires matplotlib. You can install matplotlib with "
            "`pip install matplotlib`."
        ) from e


HELPFUL_COLOR = "tab:blue"
HARMFUL_COLOR = "tab:red"


def _new_axes(ax, caller, figsize=None):
    check_matplotlib_support(caller)
    if ax is None:
        import matplotlib.pyplot as plt

        # constrained layout: titles, labels and annotations never collide
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def _rows(X, idx):
    """Rows ``idx`` of an array, DataFrame or sparse matrix, as a dense array."""
    X = take_rows(X, idx)
    X = X.toarray() if hasattr(X, "toarray") else X
    return np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)


def _check_1d_scores(scores, what="scores"):
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-d array, got shape {scores.shape}.")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what} contain NaN or infinite values.")
    return scores


class InfluenceDisplay:
    """The most helpful and most harmful training points behind one prediction.

    Shows each training point's influence ``I_up,loss`` on the test loss
    (Koh & Liang's sign: negative = helpful, positive = harmful) written above it:
    as an image grid when the samples are images (``image_shape``), as a labelled
    horizontal bar chart otherwise. Build it with :meth:`from_explainer` or
    :meth:`from_scores`.

    Parameters
    ----------
    helpful_indices, harmful_indices : ndarray of shape (k,)
        Training indices, most helpful (most negative) / most harmful first.
    helpful_values, harmful_values : ndarray of shape (k,)
        Their influence ``I_up,loss``.
    helpful_samples, harmful_samples : ndarray of shape (k, n_features), default=None
        Their features (needed for images).
    helpful_labels, harmful_labels : array-like of shape (k,), default=None
        Their training labels.
    test_sample : ndarray of shape (n_features,), default=None
        The test point's features (drawn first in image mode).
    test_label : object, default=None
        The test point's label.
    image_shape : tuple of int, default=None
        Shape each sample is reshaped to for ``imshow``; None draws bars.
    test_prediction : object, default=None
        The model's prediction for the test point, shown next to its label.
    helpful_effects, harmful_effects : ndarray of shape (k,), default=None
        The predicted change of the test loss if each point is removed from
        training (``-removal_weights_[i] * I_up,loss``); when given, these are
        the numbers written on the plot.
    helpful_flagged, harmful_flagged : ndarray of bool, shape (k,), default=None
        Points to mark (e.g. mislabel suspects): a red frame around the image, a
        hatched bar, "flagged" in their label.
    helpful_rows, harmful_rows : array-like of shape (k,), default=None
        The points' row labels (e.g. a DataFrame's index), written instead of
        ``#position``.

    Attributes
    ----------
    ax_ : matplotlib Axes
        The bar chart, or in image mode the (hidden) axes whose area holds the grid.
    axes_ : ndarray of matplotlib Axes of shape (2, k) or None
        Image mode: the helpful (row 0) and harmful (row 1) images.
    test_ax_ : matplotlib Axes or None
        Image mode: the test image.
    bars_ : matplotlib BarContainer or None
        Bar mode: the ``2 k`` bars, helpful first.
    texts_ : list of matplotlib Text
        The ``2 k`` numbers written on the plot: the change of the test loss if
        the point is removed when known (``from_explainer``), else ``I_up,loss``.
    figure_ : matplotlib Figure
        The figure.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinfluence import InfluenceExplainer
    >>> from skinfluence.plotting import InfluenceDisplay
    >>> X, y = load_digits(return_X_y=True)
    >>> ex = InfluenceExplainer(LogisticRegression(max_iter=2000)).fit(X[:500], y[:500])
    >>> disp = InfluenceDisplay.from_explainer(  # doctest: +SKIP
    ...     ex, X[600:601], y[600:601], image_shape=(8, 8)
    ... )
    """

    def __init__(
        self,
        helpful_indices,
        helpful_values,
        harmful_indices,
        harmful_values,
        *,
        helpful_samples=None,
        harmful_samples=None,
        helpful_labels=None,
        harmful_labels=None,
        test_sample=None,
        test_label=None,
        image_shape=None,
        test_prediction=None,
        helpful_effects=None,
        harmful_effects=None,
        helpful_flagged=None,
        harmful_flagged=None,
        helpful_rows=None,
        harmful_rows=None,
    ):
        self.helpful_indices = helpful_indices
        self.helpful_values = helpful_values
        self.harmful_indices = harmful_indices
        self.harmful_values = harmful_values
        self.helpful_samples = helpful_samples
        self.harmful_samples = harmful_samples
        self.helpful_labels = helpful_labels
        self.harmful_labels = harmful_labels
        self.test_sample = test_sample
        self.test_label = test_label
        self.image_shape = image_shape
        self.test_prediction = test_prediction
        self.helpful_effects = helpful_effects
        self.harmful_effects = harmful_effects
        self.helpful_flagged = helpful_flagged
        self.harmful_flagged = harmful_flagged
        self.helpful_rows = helpful_rows
        self.harmful_rows = harmful_rows

    @classmethod
    def from_explainer(
        cls,
        explainer,
        X,
        y,
        *,
        X_train=None,
        y_train=None,
        k=5,
        image_shape=None,
        flagged=None,
        ax=None,
        **kwargs,
    ):
        """Plot the ``k`` most helpful and harmful training points for one test point.

        Parameters
        ----------
        explainer : InfluenceExplainer
            A fitted explainer.
        X : array-like of shape (1, n_features) or (n_features,)
            The one test point: a 1-row array or DataFrame, a 1-d array, or a
            pandas row (``df.loc[key]``).
        y : array-like of shape (1,) or scalar
            Its label.
        X_train : array-like of shape (n_train, n_features), default=None
            The training data to draw; by default the inputs the explainer was
            fitted on, which it keeps.
        y_train : array-like of shape (n_train,), default=None
            The training labels written next to each point; by default the
            explainer's own.
        k : int, default=5
            How many helpful and how many harmful points.
        image_shape : tuple of int, default=None
            Draw samples as images of this shape (e.g. ``(8, 8)`` for digits).
        flagged : array-like of int or of bool, default=None
            Training points to mark, e.g. ``explainer.find_mislabeled(k=20)``.
        ax : matplotlib Axes, default=None
            Axes to draw in (in image mode, its area is divided into the grid).
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : InfluenceDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
            The numbers written on it are the predicted changes of the test loss
            if each training point is removed (``-removal_weights_[i] * I_up,loss``);
            points are named by the training DataFrame's index when it had one.
        """
        check_matplotlib_support(f"{cls.__name__}.from_explainer")
        X, y = _one_test_point(X, y)
        res = explainer.most_influential(X, y, k=k)
        n_train = explainer.n_train_
        kept_X, kept_y = explainer._fit_inputs[:2]
        X_train = kept_X if X_train is None else X_train
        y_train = kept_y if y_train is None else y_train
        predicted = None
        if is_classifier(explainer) and hasattr(explainer, "predict"):
            predicted = np.asarray(explainer.predict(X)).ravel()[0]
        return cls._from_indices(
            res.helpful_indices[0],
            res.helpful_values[0],
            res.harmful_indices[0],
            res.harmful_values[0],
            X_train=X_train,
            y_train=y_train,
            n_train=n_train,
            test_sample=np.ravel(_rows(X, [0])) if image_shape is not None else None,
            test_label=np.asarray(y)[0],
            image_shape=image_shape,
            test_prediction=predicted,
            removal_weights=explainer.removal_weights_,
            flagged=flagged,
            train_index=explainer._train_index,
        ).plot(ax=ax, **kwargs)

    @classmethod
    def from_scores(
        cls,
        influence,
        *,
        X_train=None,
        y_train=None,
        k=5,
        test_sample=None,
        test_label=None,
        image_shape=None,
        flagged=None,
        ax=None,
        **kwargs,
    ):
        """Plot the extremes of one row of an influence matrix.

        Parameters
        ----------
        influence : array-like of shape (n_train,)
            ``I_up,loss`` of every training point on one test point, e.g.
            ``explainer.influence(X_test, y_test)[i]``.
        X_train : array-like of shape (n_train, n_features), default=None
            Training inputs (required for images).
        y_train : array-like of shape (n_train,), default=None
            Training labels.
        k : int, default=5
            How many helpful and how many harmful points.
        test_sample : array-like of shape (n_features,), default=None
            The test point, drawn first in image mode.
        test_label : object, default=None
            Its label.
        image_shape : tuple of int, default=None
            Draw samples as images of this shape.
        flagged : array-like of int or of bool, default=None
            Training points to mark (indices or a mask over the training set).
        ax : matplotlib Axes, default=None
            Axes to draw in.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : InfluenceDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
        """
        check_matplotlib_support(f"{cls.__name__}.from_scores")
        influence = _check_1d_scores(influence, "influence")
        k = _check_k(k, len(influence))
        order = np.argsort(influence, kind="stable")
        helpful, harmful = order[:k], order[::-1][:k]
        return cls._from_indices(
            helpful,
            influence[helpful],
            harmful,
            influence[harmful],
            X_train=X_train,
            y_train=y_train,
            n_train=len(influence),
            test_sample=None if test_sample is None else np.ravel(test_sample),
            test_label=test_label,
            image_shape=image_shape,
            flagged=flagged,
        ).plot(ax=ax, **kwargs)

    @classmethod
    def _from_indices(
        cls,
        h_idx,
        h_val,
        b_idx,
        b_val,
        *,
        X_train,
        y_train,
        n_train,
        test_sample,
        test_label,
        image_shape,
        test_prediction=None,
        removal_weights=None,
        flagged=None,
        train_index=None,
    ):
        if image_shape is not None and X_train is None:
            raise ValueError("image_shape needs X_train, the training samples to draw.")
        samples = labels = (None, None)
        if X_train is not None:
            if _n_rows(X_train) != n_train:
                raise ValueError(
                    f"X_train has {_n_rows(X_train)} rows, but the explainer was fitted on "
                    f"{n_train} training points."
                )
            samples = (_rows(X_train, h_idx), _rows(X_train, b_idx))
        if y_train is not None:
            y_train = np.asarray(y_train)
            if len(y_train) != n_train:
                raise ValueError(
                    f"y_train has {len(y_train)} labels, but the explainer was fitted on "
                    f"{n_train} training points."
                )
            labels = (y_train[h_idx], y_train[b_idx])
        if image_shape is not None:
            image_shape = tuple(int(s) for s in image_shape)
            n_features = int(np.prod(samples[0].shape[1:]))  # images may be (C, H, W)
            if int(np.prod(image_shape)) != n_features:
                raise ValueError(
                    f"image_shape {image_shape} holds {int(np.prod(image_shape))} values, "
                    f"but the samples have {n_features} features."
                )
        effects = (None, None)
        if removal_weights is not None:
            w = np.asarray(removal_weights)
            effects = (-w[h_idx] * h_val, -w[b_idx] * b_val)
        marks = (None, None)
        if flagged is not None:
            mask = _as_mask(flagged, n_train)
            marks = (mask[h_idx], mask[b_idx])
        return cls(
            np.asarray(h_idx),
            np.asarray(h_val),
            np.asarray(b_idx),
            np.asarray(b_val),
            helpful_samples=samples[0],
            harmful_samples=samples[1],
            helpful_labels=labels[0],
            harmful_labels=labels[1],
            test_sample=test_sample,
            test_label=test_label,
            image_shape=image_shape,
            test_prediction=test_prediction,
            helpful_effects=effects[0],
            harmful_effects=effects[1],
            helpful_flagged=marks[0],
            harmful_flagged=marks[1],
            helpful_rows=None if train_index is None else np.asarray(train_index[h_idx]),
            harmful_rows=None if train_index is None else np.asarray(train_index[b_idx]),
        )

    def plot(self, ax=None, *, cmap="gray_r", value_format="{:+.4g}", **kwargs):
        """Draw the display.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw in; a new figure when None. In image mode the axes is
            hidden and its area divided into the image grid.
        cmap : str or Colormap, default="gray_r"
            Colormap of the images.
        value_format : str, default="{:+.4g}"
            Format of the numbers written on the plot.
        **kwargs : dict
            Passed to the artists: :meth:`~matplotlib.axes.Axes.barh` in bar mode
            (e.g. ``color=``), :meth:`~matplotlib.axes.Axes.imshow` of the training
            images in image mode. Images fill their grid cells (``aspect="auto"``),
            so that the constrained layout can place every label without
            collisions at any figure size; ``aspect="equal"`` keeps square pixels.

        Returns
        -------
        display : InfluenceDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
        """
        k = len(self.helpful_indices)
        if self.image_shape is None:
            ax = _new_axes(ax, f"{type(self).__name__}.plot", figsize=(6, 0.45 * 2 * k + 1.2))
            self._plot_bars(ax, value_format, kwargs)
        else:
            ncols = k + (self.test_sample is not None)
            ax = _new_axes(ax, f"{type(self).__name__}.plot", figsize=(1.4 * ncols, 4.4))
            self._plot_images(ax, cmap, value_format, kwargs)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    def _point_label(self, idx, label, flagged=False, row=None):
        text = f"#{idx}" if row is None else str(row)
        if label is not None:
            text += f" (y={label})"
        return text + (" flagged" if flagged else "")

    def _test_description(self):
        parts = []
        if self.test_label is not None:
            parts.append(f"y={self.test_label}")
        if self.test_prediction is not None:
            parts.append(f"predicted {self.test_prediction}")
        return ", ".join(parts)

    def _has_effects(self):
        return self.helpful_effects is not None

    def _shown(self):
        """Per point, helpful first: index, I_up,loss, number written, label, flagged."""
        idx = np.concatenate([self.helpful_indices, self.harmful_indices])
        val = np.concatenate([self.helpful_values, self.harmful_values]).astype(float)
        shown = val
        if self._has_effects():
            shown = np.concatenate([self.helpful_effects, self.harmful_effects]).astype(float)
        labels = [None] * len(idx)
        if self.helpful_labels is not None:
            labels = list(self.helpful_labels) + list(self.harmful_labels)
        flagged = np.zeros(len(idx), dtype=bool)
        if self.helpful_flagged is not None:
            flagged = np.concatenate([self.helpful_flagged, self.harmful_flagged])
        rows = [None] * len(idx)
        if self.helpful_rows is not None:
            rows = list(self.helpful_rows) + list(self.harmful_rows)
        return idx, val, shown, labels, flagged, rows

    def _plot_bars(self, ax, value_format, kwargs):
        idx, val, shown, labels, flagged, rows = self._shown()
        pos = np.arange(len(idx))[::-1]  # most helpful on top
        colors = [HARMFUL_COLOR if v > 0 else HELPFUL_COLOR for v in val]
        self.bars_ = ax.barh(pos, val, **{"color": colors, **kwargs})
        for bar, is_flagged in zip(self.bars_, flagged, strict=True):
            if is_flagged:
                bar.set_hatch("//")
                bar.set_edgecolor("black")
        ax.set_yticks(
            pos,
            [
                self._point_label(i, lab, f, row)
                for i, lab, f, row in zip(idx, labels, flagged, rows, strict=True)
            ],
        )
        ax.axvline(0, color="black", linewidth=0.8)
        # Each number sits at the zero line on the side away from its bar, in space
        # no bar uses, so it never runs into the bars or into long row names.
        self.texts_ = [
            ax.text(
                0,
                p,
                " " + value_format.format(number) + " ",
                va="center",
                ha="right" if v > 0 else "left",
                fontsize="small",
            )
            for v, number, p in zip(val, shown, pos, strict=True)
        ]
        span = np.abs(val).max() if len(val) else 1.0
        span = span if span > 0 else 1.0
        ax.set_xlim(min(val.min(), 0) - 0.5 * span, max(val.max(), 0) + 0.5 * span)
        xlabel = "influence $I_{up,loss}$ (negative = helpful, positive = harmful)"
        if self._has_effects():
            xlabel += "\nnumbers: change of the test loss if the point is removed"
        ax.set_xlabel(xlabel)
        title = "Most helpful and most harmful training points"
        if self._test_description():
            title += f"\nfor the test point ({self._test_description()})"
        ax.set_title(title)
        self.axes_ = None
        self.test_ax_ = None

    def _plot_images(self, ax, cmap, value_format, kwargs):
        k = len(self.helpful_indices)
        has_test = self.test_sample is not None
        ax.set_axis_off()
        grid = ax.get_subplotspec().subgridspec(2, k + has_test)
        fig = ax.figure
        # images fill their cells (aspect "auto"): the layout engine then places
        # every title and label exactly; fixed-aspect boxes shrink after layout
        # and let text spill at some figure sizes. aspect="equal" is a keyword away.
        image_kw = {"cmap": cmap, "aspect": "auto", **kwargs}
        self.test_ax_ = None
        if has_test:
            self.test_ax_ = fig.add_subplot(grid[0, 0])
            self.test_ax_.imshow(
                np.reshape(self.test_sample, self.image_shape),
                cmap=cmap,
                aspect=image_kw["aspect"],
            )
            desc = self._test_description().replace(", ", "\n")
            self.test_ax_.set_title("test point" + (f"\n{desc}" if desc else ""))
            self.test_ax_.set_xticks([])
            self.test_ax_.set_yticks([])
        self.caption_ = None
        if has_test and self._has_effects():
            # what the numbers are, in the cell under the test image
            cap_ax = fig.add_subplot(grid[1, 0])
            cap_ax.set_axis_off()
            self.caption_ = cap_ax.text(
                0.5,
                0.5,
                "numbers:\nchange of\nthe test\npoint's loss\nif that\ntraining\npoint is\nremoved",
                ha="center",
                va="center",
                fontsize="small",
                transform=cap_ax.transAxes,
            )
        self.axes_ = np.empty((2, k), dtype=object)
        self.texts_ = []
        idx, val, shown, labels, flagged, rows = self._shown()
        samples = [self.helpful_samples, self.harmful_samples]
        for r in range(2):
            for c in range(k):
                j = r * k + c
                a = fig.add_subplot(grid[r, c + has_test])
                a.imshow(np.reshape(samples[r][c], self.image_shape), **image_kw)
                a.set_xticks([])
                a.set_yticks([])
                color = HARMFUL_COLOR if val[j] > 0 else HELPFUL_COLOR
                self.texts_.append(a.set_title(value_format.format(shown[j]), color=color))
                a.set_xlabel(
                    self._point_label(idx[j], labels[j], row=rows[j]).replace(" (", "\n(")
                    + ("\nflagged" if flagged[j] else ""),
                    fontsize="small",
                    color=HARMFUL_COLOR if flagged[j] else "black",
                )
                if flagged[j]:
                    for spine in a.spines.values():
                        spine.set_edgecolor(HARMFUL_COLOR)
                        spine.set_linewidth(3)
                self.axes_[r, c] = a
            name = "most helpful" if r == 0 else "most harmful"
            if self._has_effects() and has_test:
                label = name
            elif self._has_effects():
                label = f"{name}\n(loss change\nif removed)"
            else:
                label = f"{name}\n($I_{{up,loss}}$ {'< 0' if r == 0 else '> 0'})"
            self.axes_[r, 0].set_ylabel(label)
        self.bars_ = None


def _check_k(k, n, name="k"):
    if not (isinstance(k, numbers.Integral) and not isinstance(k, bool) and 1 <= k <= n):
        raise ValueError(
            f"{name} must be an int between 1 and the number of training points ({n}), got {k!r}."
        )
    return int(k)


def _n_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


def _one_test_point(X, y):
    if isinstance(X, np.ndarray) and X.ndim == 1:
        X = X.reshape(1, -1)
    elif hasattr(X, "to_frame") and hasattr(X, "index"):  # a pandas row, df.loc[key]
        # one row of a mixed frame is object-typed; infer_objects restores the numbers
        X = X.to_frame().T.infer_objects()
    y = np.atleast_1d(np.asarray(y))
    if _n_rows(X) != 1 or y.shape != (1,):
        raise ValueError(
            f"InfluenceDisplay explains one test point; got {_n_rows(X)} samples and "
            f"{y.size} labels (pass X_test[i:i + 1], y_test[i:i + 1])."
        )
    return X, y


class MislabelDisplay:
    """What a mislabel score finds: detection curves, or the suspects themselves.

    With known flips (a benchmark, or labels you flipped yourself): Koh & Liang's
    Figure 6, the fraction of flipped labels found vs the fraction of data
    checked in order of decreasing score; the diagonal is what checking in
    random order finds on average. Without them (real data): the distribution
    of the score with the flagged set and its cut-off, next to the top suspects
    with their row, label and the model's prediction. Build it with
    :meth:`from_explainer` or :meth:`from_scores`.

    Parameters
    ----------
    fraction_checked : ndarray of shape (n_samples + 1,), default=None
        ``k / n`` for ``k = 0 .. n`` (detection curves).
    fraction_found : dict of str to ndarray of shape (n_samples + 1,), default=None
        For each score name, the fraction of flipped points among the first ``k``.
        None draws the suspects view instead.
    roc_auc : dict of str to float, default=None
        ROC AUC of each score, shown in the legend.
    scores : ndarray of shape (n_samples,), default=None
        Suspects view: the score of every training point.
    flagged : ndarray of bool, shape (n_samples,), default=None
        Suspects view: the flagged set.
    threshold : float, default=None
        Suspects view: the cut-off (lowest flagged score).
    suspects : Bunch, default=None
        Suspects view: ``rows`` (the rows' labels), ``positions``, ``labels``,
        ``predictions`` (or None) and ``scores`` of the top suspects, most
        suspicious first.
    name : str, default=None
        Suspects view: what the score is.

    Attributes
    ----------
    lines_ : dict of str to matplotlib Line2D
        Detection curves: one per score (empty in the suspects view).
    chance_level_ : matplotlib Line2D or None
        The diagonal of random checking.
    axes_ : ndarray of matplotlib Axes of shape (2,) or None
        Suspects view: the distribution and the suspects' bar chart.
    patches_ : list of matplotlib Patch or None
        Suspects view: the histogram bars.
    flagged_marks_, threshold_line_ : matplotlib Line2D or None
        Suspects view: the rug of flagged points and the cut-off.
    bars_ : matplotlib BarContainer or None
        Suspects view: one bar per suspect, most suspicious on top.
    ax_ : matplotlib Axes
        The axes drawn in (in the suspects view, hidden, its area divided in two).
    figure_ : matplotlib Figure
        The figure.
    """

    def __init__(
        self,
        fraction_checked=None,
        fraction_found=None,
        *,
        roc_auc=None,
        scores=None,
        flagged=None,
        threshold=None,
        suspects=None,
        name=None,
    ):
        self.fraction_checked = fraction_checked
        self.fraction_found = fraction_found
        self.roc_auc = roc_auc
        self.scores = scores
        self.flagged = flagged
        self.threshold = threshold
        self.suspects = suspects
        self.name = name

    @classmethod
    def from_scores(cls, flipped, scores, *, name=None, ax=None, **kwargs):
        """Plot the detection curve of one or several suspicion scores.

        Parameters
        ----------
        flipped : array-like of bool, shape (n_samples,)
            True for the points known to be mislabeled.
        scores : array-like of shape (n_samples,) or dict of str to array-like
            Suspicion scores (higher = checked first), or several by name.
        name : str, default=None
            Legend name when ``scores`` is one array ("score" when None).
        ax : matplotlib Axes, default=None
            Axes to draw in.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : MislabelDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
        """
        check_matplotlib_support(f"{cls.__name__}.from_scores")
        if not isinstance(scores, dict):
            scores = {name or "score": scores}
        elif not scores:
            raise ValueError("scores is an empty dict: give at least one score.")
        found, aucs, checked = {}, {}, None
        for key, s in scores.items():
            checked, found[key] = detection_curve(flipped, s)
            aucs[key] = roc_auc(flipped, s) if not np.all(flipped) else None
        return cls(checked, found, roc_auc=aucs).plot(ax=ax, **kwargs)

    @classmethod
    def from_explainer(
        cls,
        explainer,
        flipped=None,
        *,
        methods=("auto", "self_influence", "loss"),
        k=None,
        fraction=None,
        n_suspects=10,
        ax=None,
        **kwargs,
    ):
        """Plot what an explainer's mislabel scores find.

        Parameters
        ----------
        explainer : InfluenceExplainer
            An explainer fitted on the (possibly noisy) training labels.
        flipped : array-like of bool, shape (n_train,), default=None
            True for the training points known to be mislabeled: draws the
            detection curves of ``methods``. None (real data, no known flips):
            draws the distribution of the first of ``methods`` with the flagged
            set and its cut-off, and the ``n_suspects`` top suspects.
        methods : sequence of str, default=("auto", "self_influence", "loss")
            Methods of :meth:`InfluenceExplainer.mislabel_scores`; "auto" is
            labelled with the score it stands for.
        k : int, default=None
            Without ``flipped``: flag the ``k`` most suspicious points.
        fraction : float in (0, 1], default=None
            Without ``flipped``: flag this fraction of the training set. With
            neither ``k`` nor ``fraction`` the ``n_suspects`` shown are flagged.
        n_suspects : int, default=10
            Without ``flipped``: how many top suspects to list.
        ax : matplotlib Axes, default=None
            Axes to draw in.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : MislabelDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
        """
        check_matplotlib_support(f"{cls.__name__}.from_explainer")
        methods = list(methods)
        unknown = [m for m in methods if m != "auto" and m not in METHODS]
        if unknown or not methods:
            raise ValueError(
                f"Unknown mislabel method(s) {unknown or methods}; choose from "
                f"{sorted(METHODS)} or 'auto'."
            )
        auto = auto_method(explainer)
        owner = f"{cls.__name__}.from_explainer"
        check_cut(k, fraction, owner=owner)
        if flipped is not None and (k is not None or fraction is not None):
            raise ValueError(
                f"k and fraction size the flagged set of the suspects view (flipped=None); "
                f"with known flips the detection curves need neither (got k={k!r}, "
                f"fraction={fraction!r})."
            )
        if flipped is None:
            return cls._suspects(explainer, methods[0], auto, k, fraction, n_suspects).plot(
                ax=ax, **kwargs
            )
        wanted = [auto if m == "auto" else m for m in methods]
        # the explainer keeps its training-set quantities: the scores share them
        every = {m: explainer.mislabel_scores(m) for m in dict.fromkeys(wanted)}
        scores = {}
        for m in methods:
            if m == "auto" or (m == auto and "auto" in methods):
                scores[f"{auto} (auto)"] = every[auto]
            else:
                scores[m] = every[m]
        return cls.from_scores(flipped, scores, ax=ax, **kwargs)

    @classmethod
    def _suspects(cls, explainer, method, auto, k, fraction, n_suspects):
        n = explainer.n_train_
        n_suspects = _check_k(n_suspects, n, name="n_suspects")
        scores = _check_1d_scores(explainer.mislabel_scores(method))
        if k is None and fraction is None:
            k = n_suspects
        flagged = np.zeros(n, dtype=bool)
        flagged[rank_suspects(scores, k=k, fraction=fraction)] = True
        top = rank_suspects(scores, k=n_suspects)
        X, y = explainer._fit_inputs[:2]
        index = getattr(explainer, "_train_index", None)
        predictions = None
        if hasattr(explainer, "predict"):
            predictions = np.asarray(explainer.predict(take_rows(X, top)))
        suspects = Bunch(
            rows=np.asarray(top if index is None else index[top]),
            positions=top,
            labels=np.asarray(y)[top],
            predictions=predictions,
            scores=scores[top],
        )
        name = f"{auto} (auto)" if method == "auto" else method
        return cls(
            scores=scores,
            flagged=flagged,
            threshold=float(scores[flagged].min()),
            suspects=suspects,
            name=name,
        )

    def plot(
        self,
        ax=None,
        *,
        max_fraction=None,
        plot_chance_level=True,
        bins=50,
        log=False,
        **kwargs,
    ):
        """Draw the curves, or the suspects view.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw in; a new figure when None. The suspects view divides
            its area into the distribution (left) and the suspects (right).
        max_fraction : float, default=None
            Curves: show the fraction checked up to this value only (e.g. 0.4).
        plot_chance_level : bool, default=True
            Curves: draw the diagonal of random checking.
        bins : int or sequence, default=50
            Suspects view: histogram bins.
        log : bool, default=False
            Suspects view: logarithmic counts, to see the tail.
        **kwargs : dict
            Passed to :meth:`~matplotlib.axes.Axes.plot` for each score's curve
            (e.g. ``linewidth=``, ``color=``), or in the suspects view to
            :meth:`~matplotlib.axes.Axes.hist` (e.g. ``color=``).

        Returns
        -------
        display : MislabelDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
        """
        self.lines_ = {}
        self.chance_level_ = None
        self.axes_ = self.patches_ = self.flagged_marks_ = None
        self.threshold_line_ = self.bars_ = None
        if self.fraction_found is None:
            ax = _new_axes(ax, f"{type(self).__name__}.plot", figsize=(12, 4.8))
            self._plot_suspects(ax, bins, log, kwargs)
        else:
            ax = _new_axes(ax, f"{type(self).__name__}.plot")
            self._plot_curves(ax, max_fraction, plot_chance_level, kwargs)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    def _plot_curves(self, ax, max_fraction, plot_chance_level, kwargs):
        for name, found in self.fraction_found.items():
            auc = (self.roc_auc or {}).get(name)
            label = name if auc is None else f"{name} (ROC AUC {auc:.3f})"
            (self.lines_[name],) = ax.plot(
                self.fraction_checked, found, **{"label": label, **kwargs}
            )
        if plot_chance_level:
            (self.chance_level_,) = ax.plot(
                [0, 1], [0, 1], linestyle="--", color="gray", label="random (expected)"
            )
        ax.set_xlim(0, 1 if max_fraction is None else max_fraction)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("fraction of training data checked")
        ax.set_ylabel("fraction of flipped labels found")
        ax.set_title("Mislabel detection")
        ax.legend(loc="lower right")

    def _plot_suspects(self, ax, bins, log, kwargs):
        ax.set_axis_off()
        grid = ax.get_subplotspec().subgridspec(1, 2)
        dist, bars = ax.figure.add_subplot(grid[0]), ax.figure.add_subplot(grid[1])
        self.axes_ = np.array([dist, bars], dtype=object)
        self.patches_, self.flagged_marks_, self.threshold_line_ = _draw_distribution(
            dist,
            self.scores,
            self.flagged,
            self.threshold,
            self.name,
            bins,
            log,
            HARMFUL_COLOR,
            kwargs,
        )
        sus = self.suspects
        pos = np.arange(len(sus.positions))[::-1]  # most suspicious on top
        is_flagged = self.flagged[sus.positions]
        colors = [HARMFUL_COLOR if f else "tab:gray" for f in is_flagged]
        self.bars_ = bars.barh(pos, sus.scores, color=colors)
        labels = []
        for j in range(len(pos)):
            text = f"{sus.rows[j]}: y={sus.labels[j]}"
            if sus.predictions is not None:
                text += f", predicted {sus.predictions[j]}"
            labels.append(text)
        bars.set_yticks(pos, labels, fontsize="small")
        bars.set_xlabel(self.name)
        n_flagged = int(self.flagged.sum())
        bars.set_title(f"Top {len(pos)} suspects ({n_flagged} flagged of {len(self.scores)})")


class SelfInfluenceDisplay:
    """Histogram of a per-point score (self-influence by default), flagged points marked.

    Flagged points (the top of the ranking, or any mask you give) are marked as a
    rug under the histogram, with a vertical line at the flagging threshold. Build
    it with :meth:`from_explainer` or :meth:`from_scores`.

    Parameters
    ----------
    scores : ndarray of shape (n_samples,)
        The score of every point.
    flagged : ndarray of bool, shape (n_samples,)
        The points marked.
    name : str, default="self-influence"
        What the score is (axis label and title).
    threshold : float, default=None
        Score at and above which points were flagged (drawn as a vertical line).

    Attributes
    ----------
    patches_ : list of matplotlib Patch
        The histogram bars.
    flagged_marks_ : matplotlib Line2D or None
        The rug of flagged points.
    threshold_line_ : matplotlib Line2D or None
        The threshold.
    ax_ : matplotlib Axes
        The axes.
    figure_ : matplotlib Figure
        The figure.
    """

    def __init__(self, scores, flagged, *, name="self-influence", threshold=None):
        self.scores = scores
        self.flagged = flagged
        self.name = name
        self.threshold = threshold

    @classmethod
    def from_scores(
        cls, scores, *, flagged=None, k=None, fraction=None, name="score", ax=None, **kwargs
    ):
        """Plot the distribution of ``scores`` with flagged points marked.

        Parameters
        ----------
        scores : array-like of shape (n_samples,)
            One score per point, higher = more suspicious.
        flagged : array-like of bool or of int, default=None
            The points to mark (a mask or indices). Exclusive with ``k`` and
            ``fraction``.
        k : int, default=None
            Flag the ``k`` highest scores.
        fraction : float in (0, 1], default=None
            Flag this fraction of the highest scores.
        name : str, default="score"
            What the score is.
        ax : matplotlib Axes, default=None
            Axes to draw in.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : SelfInfluenceDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
        """
        check_matplotlib_support(f"{cls.__name__}.from_scores")
        scores = _check_1d_scores(scores)
        threshold = None
        if flagged is not None:
            if k is not None or fraction is not None:
                raise ValueError("Pass flagged, or k / fraction, not both.")
            flagged = _as_mask(flagged, len(scores))
        else:
            mask = np.zeros(len(scores), dtype=bool)
            if k is not None or fraction is not None:
                top = rank_suspects(scores, k=k, fraction=fraction)
                mask[top] = True
                threshold = float(scores[top].min())
            flagged = mask
        return cls(scores, flagged, name=name, threshold=threshold).plot(ax=ax, **kwargs)

    @classmethod
    def from_explainer(
        cls,
        explainer,
        *,
        method="self_influence",
        flagged=None,
        k=None,
        fraction=None,
        name=None,
        ax=None,
        **kwargs,
    ):
        """Plot the distribution of an explainer's mislabel score over its training set.

        Parameters
        ----------
        explainer : InfluenceExplainer
            A fitted explainer.
        method : str, default="self_influence"
            A method of :meth:`InfluenceExplainer.mislabel_scores`.
        flagged : array-like of bool or of int, default=None
            Training points to mark (e.g. the known flips).
        k : int, default=None
            Flag the ``k`` most suspicious points instead.
        fraction : float, default=None
            Flag this fraction of the most suspicious points instead.
        name : str, default=None
            What the score is called on the plot; by default the method's name.
        ax : matplotlib Axes, default=None
            Axes to draw in.
        **kwargs : dict
            Passed to :meth:`plot`.

        Returns
        -------
        display : SelfInfluenceDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
        """
        check_matplotlib_support(f"{cls.__name__}.from_explainer")
        scores = explainer.mislabel_scores(method)
        name = method.replace("_", "-") if name is None else name
        return cls.from_scores(
            scores, flagged=flagged, k=k, fraction=fraction, name=name, ax=ax, **kwargs
        )

    def plot(self, ax=None, *, bins=50, log=False, flagged_color=HARMFUL_COLOR, **kwargs):
        """Draw the histogram.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Axes to draw in; a new figure when None.
        bins : int or sequence, default=50
            Histogram bins (as in :func:`matplotlib.pyplot.hist`).
        log : bool, default=False
            Logarithmic counts, to see the tail.
        flagged_color : color, default="tab:red"
            Colour of the flagged marks and the threshold.
        **kwargs : dict
            Passed to :meth:`~matplotlib.axes.Axes.hist` (e.g. ``color=``,
            ``alpha=``).

        Returns
        -------
        display : SelfInfluenceDisplay
            The display, drawn; its artists are in the attributes ending in ``_``.
        """
        ax = _new_axes(ax, f"{type(self).__name__}.plot")
        self.patches_, self.flagged_marks_, self.threshold_line_ = _draw_distribution(
            ax,
            self.scores,
            self.flagged,
            self.threshold,
            self.name,
            bins,
            log,
            flagged_color,
            kwargs,
        )
        self.ax_ = ax
        self.figure_ = ax.figure
        return self


def _draw_distribution(ax, scores, flagged, threshold, name, bins, log, flagged_color, kwargs):
    """Histogram of ``scores``, a rug of the flagged ones and the threshold line."""
    _, _, patches = ax.hist(scores, bins=bins, log=log, **{"color": "tab:gray", **kwargs})
    n_flagged = int(np.sum(flagged))
    marks = line = None
    if n_flagged:
        (marks,) = ax.plot(
            scores[flagged],
            np.zeros(n_flagged),
            linestyle="none",
            marker="|",
            markersize=14,
            color=flagged_color,
            transform=ax.get_xaxis_transform(),
            label=f"flagged ({n_flagged})",
        )
    if threshold is not None:
        line = ax.axvline(threshold, color=flagged_color, linestyle="--", label="cut-off")
    ax.set_xlabel(name)
    ax.set_ylabel("number of training points")
    ax.set_title(f"Distribution of {name}")
    if n_flagged:
        ax.legend(loc="upper right")
    return list(patches), marks, line


def _as_mask(flagged, n):
    return as_mask(flagged, n, name="flagged")
