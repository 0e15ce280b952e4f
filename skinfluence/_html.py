"""A small HTML summary of an explainer, for Jupyter (``_repr_html_``)."""

import html
import numbers

from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

_STYLE = (
    "border-collapse: collapse; font-family: monospace; font-size: 0.9em; "
    "text-align: left; margin: 0.2em 0;"
)
_CELL = "padding: 0.15em 0.8em; border-bottom: 1px solid #ddd;"


def model_name(estimator):
    """A short readable name: ``Pipeline(StandardScaler → LogisticRegression)``.

    Parameters
    ----------
    estimator : estimator object
        A scikit-learn estimator, a Pipeline, a FrozenEstimator or a skorch net.

    Returns
    -------
    name : str
        Plain text (not escaped).
    """
    if isinstance(estimator, FrozenEstimator):
        return f"FrozenEstimator({model_name(estimator.estimator)})"
    if isinstance(estimator, Pipeline):
        steps = " → ".join(
            "passthrough" if step in (None, "passthrough") else model_name(step)
            for _, step in estimator.steps
        )
        return f"Pipeline({steps})"
    module = getattr(estimator, "module", None)  # skorch nets
    if module is not None:
        inner = module.__name__ if isinstance(module, type) else type(module).__name__
        return f"{type(estimator).__name__}({inner})"
    return type(estimator).__name__


def _fmt(value, spec=".3g"):
    if value is None:
        return "n/a"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format(float(value), spec)
    return str(value)


#: Solver facts already shown in their own rows.
_SHOWN = {"damping", "condition number"}


def _solver_facts(explainer):
    """The fitted solver's own summary (CG residual, LiSSA scale, ...), if it has one."""
    facts = getattr(explainer, "solver_summary_", None) or {}
    return {str(k): v for k, v in facts.items() if k not in _SHOWN}


def explainer_html(explainer):
    """HTML summary of an :class:`~skinfluence.InfluenceExplainer` for notebooks.

    Shows the model, and once fitted the solver, the damping used, the number of
    training points and parameters, the Hessian's condition number ("n/a" when the
    solver does not compute one), the solver's own facts (e.g. the CG residual) and
    how close the fit is to a stationary point. Every value is HTML-escaped.

    Parameters
    ----------
    explainer : InfluenceExplainer
        Fitted or not.

    Returns
    -------
    html : str
        A ``<div>`` holding one table.
    """
    from skinfluence.compute import STATIONARITY_WARN

    fitted = hasattr(explainer, "n_train_")
    model = explainer.estimator_ if fitted else explainer.estimator
    rows = [("model", model_name(model))]
    if not fitted:
        rows += [
            ("status", "not fitted"),
            ("solver", _fmt(explainer.solver)),
            ("damping", _fmt(explainer.damping)),
        ]
    else:
        stationarity = getattr(explainer, "stationarity_", None)
        note = ""
        if stationarity is not None and not stationarity <= STATIONARITY_WARN:
            note = " (not an optimum: influence is unreliable)"
        classes = getattr(explainer, "classes_", None)
        rows += [
            ("training points", _fmt(explainer.n_train_)),
            ("parameters", _fmt(explainer.n_params_)),
        ]
        if classes is not None:
            rows.append(("classes", _fmt(len(classes))))
        hessian = getattr(explainer, "hessian", "exact")
        rows += [
            ("solver", _fmt(explainer.solver_)),
            ("damping", _fmt(explainer.damping_)),
            ("Hessian condition", _fmt(getattr(explainer, "hessian_condition_", None))),
        ]
        if hessian not in (None, "exact"):
            rows.append(("Hessian", _fmt(hessian)))
        rows += [(name, _fmt(value)) for name, value in _solver_facts(explainer).items()]
        rows.append(("stationarity", _fmt(stationarity, ".2e") + note))
    body = "".join(
        f'<tr><th style="{_CELL}">{html.escape(k)}</th>'
        f'<td style="{_CELL}">{html.escape(v)}</td></tr>'
        for k, v in rows
    )
    title = html.escape(type(explainer).__name__)
    return (
        f'<div class="skinfluence-explainer"><table style="{_STYLE}">'
        f'<caption style="text-align: left; font-weight: bold;">{title}</caption>'
        f"{body}</table></div>"
    )
