import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy.special import softmax

from clearsight.calibration import (
    calibrated_probabilities,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from clearsight.features import PIXEL_COLUMNS, feature_table, fit_embedding_pca, pixel_features
from clearsight.gate import ModelScore, PromotionRules, decide
from clearsight.models import build_model, model_temperature, with_temperature
from tests.unit.conftest import encode

RULES = PromotionRules(critical_classes=["melanoma"], min_critical_recall=0.8)


def score(version, accuracy, f1=None, melanoma=0.9):
    return ModelScore(
        version=version,
        accuracy=accuracy,
        macro_f1=accuracy if f1 is None else f1,
        recall={"melanoma": melanoma, "nevus": 0.95},
    )


def judge(challenger, champion=None, drift=0.1, ece=0.02, tests=True):
    return decide(
        challenger,
        champion,
        drift_share=drift,
        ece=ece,
        evidently_tests_passed=tests,
        rules=RULES,
    )


def test_first_model_is_judged_on_floors_alone():
    decision = judge(score(1, 0.95))
    assert decision.promote
    assert any("no champion yet" in r for r in decision.reasons)
    # Bad drift, calibration and test suite do not block a first model: they are
    # listed as informational, so the user still sees them.
    noisy = judge(score(1, 0.95), drift=0.9, ece=0.4, tests=False)
    assert noisy.promote, noisy.reasons
    assert len(noisy.informational) == 3
    for reason in ("data drift", "calibration error 0.4000 above", "Evidently test suite failed"):
        assert any(reason in r and "not blocking" in r for r in noisy.informational), reason
        assert any(reason in r for r in noisy.reasons)
    # The floors do block it: accuracy, macro-F1 and the critical-class recall.
    assert not judge(score(1, 0.85)).promote
    assert not judge(score(1, 0.95, f1=0.85)).promote
    low_recall = judge(score(1, 0.95, melanoma=0.5), drift=0.9)
    assert not low_recall.promote
    assert any("recall of critical class 'melanoma'" in r for r in low_recall.reasons)
    assert any("not blocking" in r and "data drift" in r for r in low_recall.reasons)


def test_a_challenger_is_blocked_by_what_only_informs_about_a_first_model():
    decision = judge(score(2, 0.95), champion=score(1, 0.95), drift=0.9, ece=0.4, tests=False)
    assert not decision.promote
    assert decision.informational == []
    assert all("not blocking" not in r for r in decision.reasons)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"challenger": score(2, 0.95, melanoma=0.6)}, "recall of critical class 'melanoma'"),
        ({"challenger": score(2, 0.95), "drift": 0.8}, "data drift"),
        ({"challenger": score(2, 0.95), "ece": 0.2}, "calibration error"),
        ({"challenger": score(2, 0.95), "tests": False}, "Evidently test suite failed"),
        ({"challenger": score(2, 0.93)}, "accuracy regressed"),
        ({"challenger": score(2, 0.95, f1=0.89)}, "macro-F1 0.8900 below floor"),
    ],
)
def test_each_rule_rejects_with_its_reason(kwargs, reason):
    decision = judge(champion=score(1, 0.95), **kwargs)
    assert not decision.promote
    assert any(reason in r for r in decision.reasons), decision.reasons
    assert all("within tolerance" not in r for r in decision.reasons)  # only failures


def test_no_regression_within_tolerance_and_rejudging_the_champion():
    assert judge(score(2, 0.945), champion=score(1, 0.95)).promote
    again = judge(score(1, 0.95), champion=score(1, 0.95))
    assert again.promote and any("already the champion" in r for r in again.reasons)


def test_unknown_critical_class_is_a_failure():
    rules = RULES.model_copy(update={"critical_classes": ["pneumonia"]})
    decision = decide(
        score(1, 0.99),
        None,
        drift_share=0,
        ece=0,
        evidently_tests_passed=True,
        rules=rules,
    )
    assert not decision.promote and "not in the model's classes" in decision.reasons[0]


def test_temperature_is_recovered_and_calibration_improves():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    true_temperature = 2.5
    probabilities = softmax(logits / true_temperature, axis=1)
    labels = np.array([rng.choice(5, p=p) for p in probabilities])
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.1)
    before = expected_calibration_error(softmax(logits, axis=1), labels)
    after = expected_calibration_error(calibrated_probabilities(logits, fitted), labels)
    assert after < before / 2
    assert negative_log_likelihood(
        calibrated_probabilities(logits, fitted), labels
    ) < negative_log_likelihood(softmax(logits, axis=1), labels)


def test_negative_log_likelihood_of_known_probabilities():
    probabilities = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert negative_log_likelihood(probabilities, [0, 1]) == pytest.approx(
        -(np.log(0.5) + np.log(0.75)) / 2
    )


def test_ece_of_a_perfectly_confident_correct_model_is_zero():
    probabilities = np.eye(3)[[0, 1, 2, 1]]
    assert expected_calibration_error(probabilities, [0, 1, 2, 1]) == 0.0
    assert expected_calibration_error(probabilities, [1, 0, 0, 0]) == 1.0


def test_temperature_lives_in_the_saved_model(tmp_path):
    model = build_model(3, image_size=16)
    calibrated = with_temperature(model, 2.0)
    batch = np.random.default_rng(1).random((4, 16, 16, 3)).astype("float32")
    logits = tf.keras.Model(model.inputs, model.get_layer("logits").output)(batch).numpy()
    np.testing.assert_allclose(
        calibrated.predict(batch, verbose=0), calibrated_probabilities(logits, 2.0), atol=1e-5
    )
    calibrated.save(tmp_path / "m.keras")
    loaded = tf.keras.models.load_model(tmp_path / "m.keras")
    assert model_temperature(loaded) == pytest.approx(2.0)
    assert model_temperature(model) == 1.0
    with pytest.raises(ValueError, match="positive"):
        with_temperature(model, 0)


def test_pixel_features_on_known_images():
    white = pixel_features(encode(Image.new("RGB", (40, 20), (255, 255, 255))))
    assert white["brightness"] == pytest.approx(1.0)
    assert white["contrast"] == pytest.approx(0.0)
    assert white["sharpness"] == pytest.approx(0.0)
    assert (white["width"], white["height"], white["aspect_ratio"]) == (40, 20, 2.0)
    board = Image.fromarray((np.indices((32, 32)).sum(axis=0) % 2 * 255).astype("uint8"))
    checker = pixel_features(encode(board.convert("RGB")))
    assert checker["brightness"] == pytest.approx(0.5, abs=0.01)
    assert checker["contrast"] == pytest.approx(0.5, abs=0.01)
    assert checker["sharpness"] > 1.0
    red = pixel_features(encode(Image.new("RGB", (16, 16), (255, 0, 0))))
    assert (red["mean_r"], red["mean_g"], red["mean_b"]) == (1.0, 0.0, 0.0)


def test_feature_table_has_every_column():
    images = [encode(Image.new("RGB", (16, 16), (i * 20, 0, 0))) for i in range(6)]
    embeddings = np.random.default_rng(2).normal(size=(6, 8))
    probabilities = softmax(np.random.default_rng(3).normal(size=(6, 3)), axis=1)
    pca = fit_embedding_pca(embeddings, 3)
    table = feature_table(images, [0, 1, 2, 0, 1, 2], probabilities, embeddings, pca)
    assert list(table.columns) == [
        *PIXEL_COLUMNS,
        "embedding_0",
        "embedding_1",
        "embedding_2",
        "target",
        "prediction",
        "confidence",
    ]
    assert table["prediction"].tolist() == probabilities.argmax(axis=1).tolist()
    np.testing.assert_allclose(table["confidence"], probabilities.max(axis=1))
