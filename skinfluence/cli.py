"""The command line: ``skinfluence demo`` (also ``python -m skinfluence demo``)."""

import argparse
import sys
import time

import numpy as np

DEMO_FRACTIONS = (0.05, 0.1, 0.2, 0.3)


def _demo(args):
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from skinfluence import InfluenceExplainer
    from skinfluence.datasets import flip_labels
    from skinfluence.metrics import fraction_found

    t0 = time.perf_counter()
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.seed
    )
    y_noisy, flipped = flip_labels(y_train, args.noise, random_state=args.seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, tol=1e-8, max_iter=5000))
    ex = InfluenceExplainer(model).fit(X_train, y_noisy)
    self_inf = ex.self_influence()
    loss = ex.loss()

    print(
        f"skinfluence demo: digits, {len(y_train)} training images, "
        f"{flipped.sum()} labels flipped ({args.noise:.0%}, seed {args.seed})"
    )
    print(
        f"model: StandardScaler + LogisticRegression(C={args.C}), "
        f"{ex.n_params_} parameters, solver={ex.solver_}, "
        f"Hessian condition {ex.hessian_condition_:.3g}, "
        f"test accuracy {ex.score(X_test, y_test):.3f}"
    )
    print()
    print("Fraction of flipped labels found after checking the top of each ranking")
    header = (
        f"{'checked':>8} | {'self-influence':>14} | {'training loss':>13} | "
        f"{'random (expected)':>17}"
    )
    print(header)
    print("-" * len(header))
    found_si = fraction_found(flipped, self_inf, DEMO_FRACTIONS)
    found_loss = fraction_found(flipped, loss, DEMO_FRACTIONS)
    for f, a, b in zip(DEMO_FRACTIONS, found_si, found_loss, strict=True):
        print(f"{f:>8.0%} | {a:>14.2f} | {b:>13.2f} | {f:>17.2f}")

    pred = ex.estimator_.predict(X_test)
    wrong = np.flatnonzero(pred != y_test)
    if wrong.size:
        t = wrong[0]
        res = ex.most_influential(X_test[t : t + 1], y_test[t : t + 1], k=args.top)
        print()
        print(f"Test image {t}: true label {y_test[t]}, predicted {pred[t]}.")
        print("I_up,loss (Koh & Liang sign): negative = helpful, positive = harmful")
        for kind in ("helpful", "harmful"):
            print(f"  most {kind}:")
            for i, v in zip(res[f"{kind}_indices"][0], res[f"{kind}_values"][0], strict=True):
                note = f"  (flipped from {y_train[i]})" if flipped[i] else ""
                print(f"    train #{i:<5d} label {y_noisy[i]}  influence {v:+9.3f}{note}")
    print(f"\ndone in {time.perf_counter() - t0:.1f} s")
    return 0


def build_parser():
    """The argument parser of the ``skinfluence`` command."""
    parser = argparse.ArgumentParser(
        prog="skinfluence",
        description="Influence functions for scikit-learn models (Koh & Liang, 2017).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo",
        help="find flipped labels in digits by self-influence, and explain one error",
    )
    demo.add_argument("--noise", type=float, default=0.1, help="fraction of labels flipped")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--C", type=float, default=1.0, help="inverse L2 strength")
    demo.add_argument("--top", type=int, default=5, help="training points to show")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Entry point of the ``skinfluence`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, TypeError) as exc:
        print(f"skinfluence: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
