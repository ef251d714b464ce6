"""``ErrorDirections`` under scikit-learn's ``check_estimator``.

``fit`` takes the audited model's predictions as a third argument (``fit(X, labels,
predictions)``); scikit-learn's checks call ``fit(X, y)``, so every check that fits
cannot apply. Those are declared through scikit-learn's own expected-failure mechanism
(``expected_failed_checks``), each with its reason; every other check must pass.

Every other check must pass (``transform`` makes it a transformer, so it sets
``transformer_tags``).
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import check_estimator

from failscope.directions import ErrorDirections

NEEDS_PREDICTIONS = (
    "fit(X, y) cannot apply: ErrorDirections.fit needs the audited model's predictions "
    "as a third argument (fit(X, labels, predictions))"
)
#: Checks whose first fit(X, y) fails for want of predictions (status "xfail" below).
FITTING_CHECKS = (
    "check_complex_data", "check_dict_unchanged", "check_dont_overwrite_parameters",
    "check_dtype_object", "check_estimator_sparse_array", "check_estimator_sparse_matrix",
    "check_estimator_sparse_tag", "check_estimators_dtypes",
    "check_estimators_empty_data_messages", "check_estimators_fit_returns_self",
    "check_estimators_nan_inf", "check_estimators_overwrite_params", "check_estimators_pickle",
    "check_f_contiguous_array_estimator", "check_fit1d", "check_fit2d_1feature",
    "check_fit2d_1sample", "check_fit2d_predict1d", "check_fit_check_is_fitted",
    "check_fit_idempotent", "check_fit_score_takes_y", "check_methods_sample_order_invariance",
    "check_methods_subset_invariance", "check_n_features_in", "check_n_features_in_after_fitting",
    "check_pipeline_consistency", "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input", "check_transformer_data_not_an_array",
    "check_transformer_general",
)  # fmt: skip
EXPECTED_FAILED_CHECKS = dict.fromkeys(FITTING_CHECKS, NEEDS_PREDICTIONS)


def _missing_predictions(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from is fit's missing-argument error."""
    while exc is not None:
        if isinstance(exc, TypeError) and "'predictions'" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _run(estimator):
    return check_estimator(
        estimator, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_skip=None, on_fail=None
    )


def test_error_directions_passes_every_check_that_applies():
    results = _run(ErrorDirections())
    failed = sorted({r["check_name"] for r in results if r["status"] == "failed"})
    assert failed == []
    xfail = {r["check_name"] for r in results if r["status"] == "xfail"}
    assert xfail == set(FITTING_CHECKS)  # each declared check really cannot apply ...
    for r in results:
        if r["status"] == "xfail":  # ... for the stated reason
            assert _missing_predictions(r["exception"]), (r["check_name"], r["exception"])
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert {"check_get_params_invariance", "check_set_params", "check_no_attributes_set_in_init",
            "check_parameters_default_constructible"} <= passed  # fmt: skip
