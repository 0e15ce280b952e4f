"""The notebook summary of an explainer: content, escaping, well-formed markup."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skinfluence import InfluenceExplainer
from skinfluence._html import explainer_html, model_name


@pytest.fixture(scope="module")
def data():
    return make_classification(
        n_samples=120,
        n_features=4,
        n_informative=3,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        random_state=0,
    )


def _rows(html):
    root = ET.fromstring(html)  # well-formed, or this raises
    assert root.tag == "div"
    table = root.find("table")
    assert table.find("caption").text == "InfluenceExplainer"
    return {tr.find("th").text: tr.find("td").text for tr in table.iter("tr")}


def test_fitted_summary(data):
    X, y = data
    ex = InfluenceExplainer(LogisticRegression(tol=1e-10, max_iter=1000)).fit(X, y)
    rows = _rows(explainer_html(ex))
    assert list(rows)[:6] == [
        "model",
        "training points",
        "parameters",
        "classes",
        "solver",
        "damping",
    ]
    assert list(rows)[-1] == "stationarity"
    assert (
        rows.items()
        >= {
            "model": "LogisticRegression",
            "training points": "120",
            "parameters": str(ex.n_params_),
            "classes": "3",
            "solver": "direct",
            "damping": "0",
            "Hessian condition": format(ex.hessian_condition_, ".3g"),
            "stationarity": format(ex.stationarity_, ".2e"),
        }.items()
    )
    assert ex.n_params_ == 3 * (4 + 1)


def test_pipeline_cg_and_damping(data):
    X, y = data
    model = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-10))
    ex = InfluenceExplainer(model, solver="cg", damping=0.05).fit(X, y)
    rows = _rows(explainer_html(ex))
    assert rows["model"] == "Pipeline(StandardScaler → LogisticRegression)"
    assert rows["solver"] == "cg"
    assert rows["damping"] == "0.05"
    assert rows["Hessian condition"] == "n/a"  # cg does not compute one
    # but reports how well it solved
    residual = [k for k in rows if "residual" in k]
    assert len(residual) == 1 and float(rows[residual[0]]) < 1e-6


def test_regressor_has_no_classes_row(data):
    X, _ = data
    y = X @ np.arange(4.0)
    rows = _rows(explainer_html(InfluenceExplainer(Ridge()).fit(X, y)))
    assert rows["model"] == "Ridge" and "classes" not in rows


def test_unfitted_summary_shows_the_request(data):
    X, y = data
    frozen = FrozenEstimator(LogisticRegression().fit(X, y))
    rows = _rows(explainer_html(InfluenceExplainer(frozen, damping=0.1)))
    assert rows == {
        "model": "FrozenEstimator(LogisticRegression)",
        "status": "not fitted",
        "solver": "auto",
        "damping": "0.1",
    }


def test_values_are_escaped_and_a_bad_fit_is_flagged(data):
    X, y = data
    ex = InfluenceExplainer(LogisticRegression(tol=1e-10)).fit(X, y)
    ex.solver_ = "<script>alert(1)</script>"
    ex.stationarity_ = 0.25
    html = explainer_html(ex)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    rows = _rows(html)
    assert rows["solver"] == "<script>alert(1)</script>"  # escaped, not lost
    assert rows["stationarity"] == "2.50e-01 (not an optimum: influence is unreliable)"


def test_model_name_of_a_skorch_like_net():
    class Net:
        module = type("MLP", (), {})

    assert model_name(Net()) == "Net(MLP)"
    assert model_name(make_pipeline("passthrough", Ridge())) == "Pipeline(passthrough → Ridge)"
