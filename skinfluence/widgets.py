"""An interactive view of a fitted explainer for Jupyter notebooks (ipywidgets).

:class:`InfluenceExplorer` puts the two questions an explainer answers side by
side: which training rows drive the prediction at a test point, and why a
training row looks mislabeled. Every table it shows is also returned as data
(:meth:`InfluenceExplorer.test_tables`, :meth:`InfluenceExplorer.suspect_details`),
from the same functions that draw the view.

ipywidgets and pandas are imported only when an explorer is built
(``pip install skinfluence[widgets]``).

Sign convention (Koh & Liang): influence ``I_up,loss`` > 0 is harmful
(upweighting the training row raises the test loss), < 0 helpful.
"""

import html
import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.utils import Bunch
from sklearn.utils.validation import check_is_fitted

from skinfluence import frames
from skinfluence.constraints import Interval, check_param
from skinfluence.explainer import InfluenceExplainer
from skinfluence.indexing import take_rows

#: Feature columns shown in a table of the view (the returned frames keep them all).
MAX_SHOWN_COLUMNS = 20

_SIGN_NOTE = (
    "Influence I_up,loss (Koh &amp; Liang): negative = helpful (upweighting the training "
    "row lowers the test loss), positive = harmful (it raises it)."
)


def check_ipywidgets_support(caller_name):
    """Raise an ImportError naming ``caller_name`` when ipywidgets or pandas is missing.

    Parameters
    ----------
    caller_name : str
        Who needs them, for the message.

    Returns
    -------
    widgets, pd : module
        ``ipywidgets`` and ``pandas``.
    """
    try:
        import ipywidgets as widgets
    except ImportError as e:
        raise ImportError(
            f"{caller_name} requires ipywidgets. You can install ipywidgets with "
            "`pip install ipywidgets` (or `pip install skinfluence[widgets]`)."
        ) from e
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas comes with the widgets extra
        raise ImportError(
            f"{caller_name} requires pandas. You can install pandas with `pip install pandas`."
        ) from e
    return widgets, pd


def _n_rows(a, name):
    shape = getattr(a, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    if hasattr(a, "__len__") and not isinstance(a, str | bytes):
        return len(a)
    raise ValueError(f"{name} must hold one entry per sample, got {type(a).__name__} {a!r}.")


def _as_numpy(a):
    """Labels or predictions as an ndarray (torch tensors and pandas objects included)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def _label_columns(name, values):
    """One column, or ``name_0``, ``name_1``, ... for several targets."""
    values = np.asarray(values)
    if values.ndim == 2:
        return {f"{name}_{j}": values[:, j] for j in range(values.shape[1])}
    return {name: values}


def _fmt(value):
    """A label, prediction or number as short text."""
    if value is None:
        return "n/a"
    if isinstance(value, np.ndarray):
        return "(" + ", ".join(_fmt(v) for v in value.ravel()) + ")"
    if isinstance(value, numbers.Integral | np.bool_):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{float(value):.4g}"
    return str(value)


def _lookup(labels, key, what, parameter):
    """The position of row label ``key`` in ``labels`` (a unique match, else an error)."""
    try:
        loc = labels.get_loc(key)
    except (KeyError, TypeError):
        loc = None
    if loc is None:
        shown = ", ".join(repr(v) for v in labels[:5].tolist())
        more = ", ..." if len(labels) > 5 else ""
        raise KeyError(f"{parameter}={key!r} is not one of the {what} ({shown}{more}).")
    if not isinstance(loc, numbers.Integral):
        raise ValueError(
            f"{parameter}={key!r} names several {what}: their labels are not unique; give "
            "the data a unique index to select rows by label."
        )
    return int(loc)


def _bundle(html_text, plain_text):
    return {
        "output_type": "display_data",
        "data": {"text/html": html_text, "text/plain": plain_text},
        "metadata": {},
    }


def _table_html(frame):
    return frame.to_html(
        max_cols=MAX_SHOWN_COLUMNS, float_format=lambda v: f"{v:.4g}", border=0, notebook=True
    )


class InfluenceExplorer:
    """Browse test points and mislabel suspects of a fitted explainer in a notebook.

    Two tabs of an :class:`ipywidgets.Tab` (:attr:`widget`):

    - **Test point**: choose a test row; see its features, label and prediction,
      and the ``k`` most helpful and ``k`` most harmful training rows for its
      loss, with their influence, training labels and raw feature values.
    - **Suspects**: choose one of the ``n_suspects`` training rows that look most
      mislabeled (:meth:`~skinfluence.InfluenceExplainer.find_mislabeled`); see
      why: its label and the model's prediction, its training loss, the
      probability the model gives its label when it did not see the row
      (cross-fitted, classifiers), its suspicion score, and the test rows it
      moves most.

    Leaving the explorer last in a cell shows it. Requires ipywidgets and pandas
    (``pip install skinfluence[widgets]``).

    Parameters
    ----------
    explainer : InfluenceExplainer
        A fitted explainer. Its training rows are named by the training data's
        own index labels (positions when it had none).
    X_test : array-like, sparse matrix or DataFrame of shape (n_test, n_features)
        Test samples, as the explainer takes them. A DataFrame's index labels
        name the test rows (positions otherwise).
    y_test : array-like of shape (n_test,) or (n_test, n_targets)
        Their labels or targets.
    k : int, default=5
        Training rows per table (helpful, harmful), and test rows shown as moved
        most by a suspect. At most ``explainer.n_train_``.
    n_suspects : int, default=20
        How many of the most suspicious training rows to offer. At most
        ``explainer.n_train_``.
    method : str, default="auto"
        The mislabel score, as in
        :meth:`~skinfluence.InfluenceExplainer.mislabel_scores`.

    Attributes
    ----------
    widget : ipywidgets.Tab
        The view.
    suspects_ : DataFrame
        ``explainer.find_mislabeled(k=n_suspects, method=method, as_frame=True)``:
        the suspects offered, most suspicious first.
    method_ : str
        The mislabel score used, after resolving "auto".

    See Also
    --------
    skinfluence.plotting.InfluenceDisplay : A static chart of one test point's
        most influential training rows.

    Notes
    -----
    The influence of every training row on every test row
    (``explainer.influence(X_test, y_test)``, ``n_test * n_train`` floats) is
    computed once, the first time a suspect is shown; the tables of a test point
    when it is first shown. The cross-fitted probabilities refit the model (see
    :meth:`~skinfluence.InfluenceExplainer.cross_fitted_losses`), once per
    explainer fit.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from skinfluence import InfluenceExplainer
    >>> from skinfluence.widgets import InfluenceExplorer
    >>> X, y = make_classification(n_samples=80, n_features=4, random_state=0)
    >>> ex = InfluenceExplainer(LogisticRegression()).fit(X[:60], y[:60])
    >>> explorer = InfluenceExplorer(ex, X[60:], y[60:], k=3, n_suspects=5)
    >>> explorer.test_tables(0).harmful.columns[:3].tolist()
    ['position', 'label', 'influence']
    >>> explorer  # doctest: +SKIP
    """

    def __init__(self, explainer, X_test, y_test, *, k=5, n_suspects=20, method="auto"):
        caller = type(self).__name__
        self._widgets, self._pd = check_ipywidgets_support(caller)
        if not isinstance(explainer, InfluenceExplainer):
            raise TypeError(
                f"explainer must be a fitted InfluenceExplainer, got {type(explainer).__name__}."
            )
        check_is_fitted(explainer)
        n_train = explainer.n_train_
        check_param(caller, "k", k, [Interval("int", 1, n_train)])
        check_param(caller, "n_suspects", n_suspects, [Interval("int", 1, n_train)])
        n_test = _n_rows(X_test, "X_test")
        n_y = _n_rows(y_test, "y_test")
        if n_test != n_y:
            raise ValueError(
                f"X_test and y_test have different lengths: X_test has {n_test} rows, "
                f"y_test has {n_y} entries."
            )
        if n_test == 0:
            raise ValueError("X_test has no rows: there is no test point to explore.")
        self.explainer = explainer
        self.X_test = X_test
        self.y_test = y_test
        self.k = int(k)
        self.n_suspects = int(n_suspects)
        self.method = method

        # -- test rows: labels, predictions, losses (this validates X_test too)
        self._y_test = _as_numpy(y_test)
        self._test_labels = frames.labels_for(frames.row_index(X_test), np.arange(n_test), caller)
        self._test_pred = (
            _as_numpy(explainer.predict(X_test)) if hasattr(explainer, "predict") else None
        )
        self._test_loss = np.asarray(explainer.loss(X_test, y_test))

        # -- training rows: labels, losses, scores, the suspects
        self._X_train, y_train = explainer._fit_inputs[:2]
        self._y_train = _as_numpy(y_train)
        self._train_labels = frames.labels_for(explainer._train_index, np.arange(n_train), caller)
        self._train_loss = np.asarray(explainer.loss())
        self.suspects_ = explainer.find_mislabeled(k=n_suspects, method=method, as_frame=True)
        self.method_ = self.suspects_.attrs["method"]
        self._scores = np.asarray(explainer.mislabel_scores(method=method))
        self._suspect_positions = self.suspects_["position"].to_numpy()

        # -- lazily computed, kept
        self._test_cache = {}  # test position -> Bunch of test_tables
        self._influence_matrix = None  # (n_test, n_train)
        self._held_out = None  # cross_fitted_losses().held_out, once made
        self._held_out_error = None  # or why it could not be made
        self._suspects_shown = False

        self.widget = self._build_widget()

    # -- data -----------------------------------------------------------------------
    def _feature_frame(self, X, positions):
        """Raw feature values of rows ``positions`` of ``X`` (x0, x1, ... for arrays)."""
        pd = self._pd
        rows = take_rows(X, np.asarray(positions, dtype=np.intp))
        if hasattr(rows, "iloc"):
            frame = rows.to_frame() if rows.ndim == 1 else rows.copy()
            return frame.reset_index(drop=True)
        if sp.issparse(rows):
            rows = rows.toarray()
        rows = _as_numpy(rows)
        if rows.ndim == 1:  # one raw input per row (e.g. documents for a vectorizer)
            rows = rows[:, None]
        elif rows.ndim > 2:  # images and other tensors, flattened
            rows = rows.reshape(rows.shape[0], -1)
        return pd.DataFrame(rows, columns=[f"x{j}" for j in range(rows.shape[1])])

    def _with_features(self, info, X, positions):
        """``info`` (indexed by row labels) followed by the rows' raw features."""
        features = self._feature_frame(X, positions)
        clash = {c: f"{c} (feature)" for c in features.columns if c in info.columns}
        features = features.rename(columns=clash)
        out = self._pd.concat([info.reset_index(drop=True), features], axis=1)
        out.index = info.index
        return out

    def _test_position(self, label):
        return _lookup(self._test_labels, label, "test rows", "label")

    def _train_position(self, label):
        return _lookup(self._train_labels, label, "training rows", "label")

    def _train_prediction(self, pos):
        if not hasattr(self.explainer, "predict"):
            return None
        return _as_numpy(self.explainer.predict(take_rows(self._X_train, [pos])))[0]

    def test_tables(self, label):
        """The test row ``label`` and the training rows most responsible for its loss.

        Parameters
        ----------
        label : object
            The test row: its index label when ``X_test`` is a DataFrame, its
            position otherwise.

        Returns
        -------
        tables : Bunch
            ``test``: a one-row DataFrame (columns ``label``, ``prediction`` when
            the model predicts, ``loss``, then the raw features). ``helpful`` and
            ``harmful``: the ``k`` training rows of most negative (most helpful
            first) and most positive (most harmful first) influence, indexed by
            the training rows' own labels, with columns ``position``, ``label``
            (their training label), ``influence``, then their raw feature values
            (the training inputs the explainer kept; ``x0``, ``x1``, ... for
            arrays). ``position`` and ``row``: the test row's position and label.
        """
        pos = self._test_position(label)
        if pos not in self._test_cache:
            self._test_cache[pos] = self._make_test_tables(pos)
        tables = self._test_cache[pos]  # copies out: editing them changes nothing kept
        return Bunch(
            **{n: v.copy() if n in ("test", "helpful", "harmful") else v for n, v in tables.items()}
        )

    def _make_test_tables(self, pos):
        pd = self._pd
        X_one = take_rows(self.X_test, [pos])
        y_one = take_rows(self.y_test, [pos])
        top = self.explainer.most_influential(X_one, y_one, k=self.k, as_frame=True)
        keep = [c for c in top.columns if c not in ("test", "kind", "rank")]
        tables = {}
        for kind in ("helpful", "harmful"):
            part = top[top["kind"] == kind].sort_values("rank", kind="stable")[keep]
            tables[kind] = self._with_features(part, self._X_train, part["position"].to_numpy())
        columns = {**_label_columns("label", self._y_test[[pos]])}
        if self._test_pred is not None:
            columns.update(_label_columns("prediction", self._test_pred[[pos]]))
        columns["loss"] = self._test_loss[[pos]]
        info = pd.DataFrame(columns, index=self._test_labels[[pos]])
        test = self._with_features(info, self.X_test, [pos])
        return Bunch(test=test, row=self._test_labels[pos], position=pos, **tables)

    def _influence(self):
        if self._influence_matrix is None:
            self._influence_matrix = np.asarray(self.explainer.influence(self.X_test, self.y_test))
        return self._influence_matrix

    def _cross_fitted(self):
        """Held-out losses, or None (with the reason kept) when they cannot be made."""
        if self._held_out is None and self._held_out_error is None:
            try:
                self._held_out = self.explainer.cross_fitted_losses().held_out
            except ValueError as exc:  # fit parameters, too few samples of a class, ...
                self._held_out_error = str(exc)
        return self._held_out

    def suspect_details(self, label):
        """Why training row ``label`` looks mislabeled: the numbers the view shows.

        Parameters
        ----------
        label : object
            The training row: its index label when the training data was a
            DataFrame, its position otherwise. Any training row, not only the
            suspects offered.

        Returns
        -------
        details : Bunch
            ``row`` (its label) and ``position``; ``label`` (its training label),
            ``prediction`` (the model's, None when it does not predict);
            ``loss`` (``explainer.loss()[position]``); ``probability``
            (``exp(-loss)``, the probability the fitted model gives its label;
            classifiers, else None); ``held_out_loss`` (its loss under the
            cross-fitted model that did not see it, None when it cannot be made,
            see ``held_out_note``); ``cv_probability`` (``exp(-held_out_loss)``:
            the probability the model gives its label when it did not see the
            row; classifiers, else None); ``score``, ``method`` and ``rank``
            (1 = most suspicious; None when it is not among the ``n_suspects``
            offered); ``features`` (a one-row DataFrame of its raw features);
            ``moved``: the ``k`` test rows with the largest ``|influence|`` of
            this training row, largest first, indexed by the test rows' labels,
            with columns ``position``, ``label``, ``prediction`` (when the model
            predicts) and ``influence`` (signed: positive = harmful, the row
            raises that test loss; negative = helpful).
        """
        pd = self._pd
        pos = self._train_position(label)
        classifier = self.explainer.classes_ is not None
        loss = float(self._train_loss[pos])
        held = self._cross_fitted()
        held_out_loss = None if held is None else float(held[pos])
        ranks = np.flatnonzero(self._suspect_positions == pos)
        column = self._influence()[:, pos]
        order = np.argsort(-np.abs(column), kind="stable")[: self.k]
        columns = {"position": order, **_label_columns("label", self._y_test[order])}
        if self._test_pred is not None:
            columns.update(_label_columns("prediction", self._test_pred[order]))
        columns["influence"] = column[order]
        moved = pd.DataFrame(columns, index=self._test_labels[order])
        features = self._feature_frame(self._X_train, [pos])
        features.index = self._train_labels[[pos]]
        return Bunch(
            row=self._train_labels[pos],
            position=pos,
            label=self._y_train[pos],
            prediction=self._train_prediction(pos),
            loss=loss,
            probability=float(np.exp(-loss)) if classifier else None,
            held_out_loss=held_out_loss,
            cv_probability=(
                float(np.exp(-held_out_loss)) if classifier and held is not None else None
            ),
            held_out_note=self._held_out_error,
            score=float(self._scores[pos]),
            method=self.method_,
            rank=int(ranks[0]) + 1 if ranks.size else None,
            features=features,
            moved=moved,
        )

    # -- rendering (from test_tables / suspect_details only) -----------------------------
    def _render_test(self, pos):
        t = self.test_tables(self._test_labels[pos])
        row = html.escape(str(t.row))
        parts = [
            f"<h4>Test row {row}</h4>",
            _table_html(t.test),
            f"<p><small>{_SIGN_NOTE}</small></p>",
            f"<h4>The {self.k} most helpful training rows</h4>",
            _table_html(t.helpful),
            f"<h4>The {self.k} most harmful training rows</h4>",
            _table_html(t.harmful),
        ]
        plain = (
            f"Test row {t.row}\n{t.test.to_string()}\n\nMost helpful training rows\n"
            f"{t.helpful.to_string()}\n\nMost harmful training rows\n{t.harmful.to_string()}"
        )
        return _bundle("\n".join(parts), plain)

    def _render_suspect(self, pos):
        d = self.suspect_details(self._train_labels[pos])
        lines = [("Label", _fmt(d.label))]
        if d.prediction is not None:
            lines.append(("Model's prediction", _fmt(d.prediction)))
        lines.append(("Training loss", _fmt(d.loss)))
        if d.probability is not None:
            lines.append(
                ("Probability of its label (fitted model, which saw the row)", _fmt(d.probability))
            )
        if d.cv_probability is not None:
            lines.append(
                (
                    "Cross-fitted probability of its label (the probability the model gives "
                    "its label when it did not see the row)",
                    _fmt(d.cv_probability),
                )
            )
        elif d.held_out_loss is not None:
            lines.append(
                ("Cross-fitted loss (model that did not see the row)", _fmt(d.held_out_loss))
            )
        elif d.held_out_note is not None:
            lines.append(("Cross-fitted loss", f"not available: {d.held_out_note}"))
        rank = "" if d.rank is None else f" (rank {d.rank} of {self.n_suspects})"
        lines.append((f"Suspicion score, {d.method}", _fmt(d.score) + rank))
        items = "".join(
            f"<tr><th style='text-align:left'>{html.escape(name)}</th>"
            f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
            for name, value in lines
        )
        parts = [
            f"<h4>Training row {html.escape(str(d.row))} (position {d.position})</h4>",
            f"<table>{items}</table>",
            _table_html(d.features),
            f"<h4>The {len(d.moved)} test rows it moves most (largest |influence|)</h4>",
            f"<p><small>{_SIGN_NOTE}</small></p>",
            _table_html(d.moved),
        ]
        plain = "\n".join(
            [f"Training row {d.row} (position {d.position})"]
            + [f"{name}: {value}" for name, value in lines]
            + ["", "Test rows it moves most (largest |influence|)", d.moved.to_string()]
        )
        return _bundle("\n".join(parts), plain)

    # -- the widget -----------------------------------------------------------------------
    def _test_option(self, pos):
        text = f"{self._test_labels[pos]}: label {_fmt(self._y_test[pos])}"
        if self._test_pred is not None:
            text += f", predicted {_fmt(self._test_pred[pos])}"
        return (text, pos)

    def _suspect_option(self, rank, pos):
        text = f"{rank}. {self._train_labels[pos]}: label {_fmt(self._y_train[pos])}"
        if "prediction" in self.suspects_.columns:
            text += f", predicted {_fmt(self.suspects_['prediction'].iloc[rank - 1])}"
        return (text + f", score {_fmt(self._scores[pos])}", pos)

    def _build_widget(self):
        w = self._widgets
        style = {"description_width": "initial"}
        layout = w.Layout(width="max-content")
        self._test_dropdown = w.Dropdown(
            options=[self._test_option(p) for p in range(len(self._test_labels))],
            description="Test row:",
            style=style,
            layout=layout,
        )
        self._test_output = w.Output()
        self._suspect_dropdown = w.Dropdown(
            options=[
                self._suspect_option(r, int(p)) for r, p in enumerate(self._suspect_positions, 1)
            ],
            description=f"Suspect ({self.method_}):",
            style=style,
            layout=layout,
        )
        self._suspect_output = w.Output()
        self._test_dropdown.observe(self._on_test, names="value")
        self._suspect_dropdown.observe(self._on_suspect, names="value")
        tab = w.Tab(
            children=[
                w.VBox([self._test_dropdown, self._test_output]),
                w.VBox([self._suspect_dropdown, self._suspect_output]),
            ],
            titles=("Test point", "Suspects"),
        )
        tab.observe(self._on_tab, names="selected_index")
        self._show_test(self._test_dropdown.value)
        return tab

    def _show_test(self, pos):
        self._test_output.outputs = (self._render_test(pos),)

    def _show_suspect(self, pos):
        self._suspect_output.outputs = (self._render_suspect(pos),)
        self._suspects_shown = True

    def _on_test(self, change):
        self._show_test(change["new"])

    def _on_suspect(self, change):
        self._show_suspect(change["new"])

    def _on_tab(self, change):
        # the suspects' tab needs the whole influence matrix: made when first shown
        if change["new"] == 1 and not self._suspects_shown:
            self._show_suspect(self._suspect_dropdown.value)

    def select_test(self, label):
        """Show test row ``label`` (sets the dropdown, as a click would).

        Parameters
        ----------
        label : object
            Its index label when ``X_test`` is a DataFrame, its position otherwise.
        """
        pos = self._test_position(label)
        if self._test_dropdown.value == pos:
            self._show_test(pos)
        else:
            self._test_dropdown.value = pos  # the observer draws it

    def select_suspect(self, label):
        """Show suspect ``label`` (sets the dropdown, as a click would).

        Parameters
        ----------
        label : object
            The training row's index label (its position for training data
            without an index); one of the ``n_suspects`` offered
            (``suspects_.index``).
        """
        pos = self._train_position(label)
        if pos not in self._suspect_positions:
            raise KeyError(
                f"label={label!r} is not one of the {self.n_suspects} suspects offered "
                f"(suspects_.index); suspect_details({label!r}) explains any training row."
            )
        if self._suspect_dropdown.value == pos:
            self._show_suspect(pos)
        else:
            self._suspect_dropdown.value = pos

    # -- display -------------------------------------------------------------------------
    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self):
        return (
            f"{type(self).__name__}(n_test={len(self._test_labels)}, "
            f"n_train={self.explainer.n_train_}, k={self.k}, n_suspects={self.n_suspects}, "
            f"method={self.method_!r})"
        )
