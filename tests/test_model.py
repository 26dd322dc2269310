"""The model and the training function on tiny generated data (32 px, a few dozen images)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from faceage.config import AugmentConfig, TrainConfig
from faceage.data.prepared import Split
from faceage.errors import ConfigError, DataError
from faceage.inference import estimate, input_size, load_model, predict_ages
from faceage.model import (AGE_BINS, AgeDistributionLoss, CaffePreprocess, augmentation, build_model, expected_age,
                           label_distribution, tiny_cnn)
from faceage.train import ArrayBatches, TimeBudget, age_weights, cosine_value, fit, mix_up

SIZE = 32
NO_AUG = AugmentConfig.off()
# Tests of training mechanics (heads, loss weights, budgets, batches) use the tiny backbone: building and tracing
# ResNet50 (or MobileNetV3Small) costs ~40 s per test on a slow 2-core machine, tiny_cnn ~3 s. ResNet50 itself is
# trained (in bf16), saved and reloaded below; every backbone is built.
TINY = "tiny_cnn"


def tiny_split(n: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    ages = rng.uniform(1, 80, size=n).astype("float32")
    # Brightness carries the age, so there is something to learn.
    images = np.clip(ages[:, None, None, None] * 3 + rng.normal(0, 5, (n, SIZE, SIZE, 3)), 0, 255).astype("uint8")
    return Split(images, ages, pd.DataFrame({"file": [f"{i}.jpg" for i in range(n)], "age": ages}))


@pytest.fixture(autouse=True)
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def test_caffe_preprocess_flips_channels_and_subtracts_imagenet_mean() -> None:
    x = np.array([[[[10.0, 20.0, 30.0]]]], dtype="float32")
    out = keras.ops.convert_to_numpy(CaffePreprocess()(x))
    np.testing.assert_allclose(out[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-5)


def test_augmentation_layers_follow_params_and_are_inactive_at_inference() -> None:
    assert len(augmentation(NO_AUG, 0).layers) == 0
    full = AugmentConfig(flip=True, rotation=0.1, zoom=0.1, shift=0.1, brightness=0.2, contrast=0.2, erase=0.5)
    aug = augmentation(full, 0)
    assert [type(layer).__name__ for layer in aug.layers] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomBrightness", "RandomContrast",
        "RandomErasing"]
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(aug(x, training=False)), x)
    assert not np.allclose(keras.ops.convert_to_numpy(aug(x, training=True)), x)


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v3_small", "tiny_cnn"])
def test_build_model_outputs_one_age_per_image(backbone: str) -> None:
    model = build_model(TrainConfig(backbone=backbone, augment=NO_AUG), SIZE, 30.0)
    out = model.predict(np.zeros((3, SIZE, SIZE, 3), "float32"), verbose=0)
    assert out.shape == (3, 1) and np.isfinite(out).all()
    assert model.get_layer("age").bias.numpy()[0] == pytest.approx(30.0)


def test_missing_weights_file_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.weights: file not found"):
        build_model(TrainConfig(weights=str(tmp_path / "nope.h5")), SIZE, 30.0)


def test_weights_load_from_a_local_file(tmp_path: Path) -> None:
    """Pretrained backbones come from a local path (offline): the loaded weights are the file's."""
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), pooling="avg")
    path = tmp_path / "resnet50_notop.weights.h5"
    source.save_weights(path)
    model = build_model(TrainConfig(weights=str(path), augment=NO_AUG), SIZE, 30.0)
    loaded = model.get_layer("resnet50").get_weights()
    for a, b in zip(loaded, source.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_tiny_cnn_weights_load_from_a_local_file(tmp_path: Path) -> None:
    keras.utils.set_random_seed(1)
    source = tiny_cnn((SIZE, SIZE, 3))
    path = tmp_path / "tiny_cnn.weights.h5"
    source.save_weights(path)
    keras.utils.set_random_seed(2)
    model = build_model(TrainConfig(backbone="tiny_cnn", weights=str(path), augment=NO_AUG), SIZE, 30.0)
    for a, b in zip(model.get_layer("tiny_cnn").get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_returns_best_epoch_model_without_optimizer_and_history(tmp_path: Path) -> None:
    """ResNet50 (the default) in mixed bfloat16 (what `precision: auto` picks on a GPU or an AVX512_BF16 CPU):
    one training, since each costs ~90 s of graph tracing on a slow 2-core CPU; fp32 training is the plain path,
    exercised with the tiny backbone by the other fit tests. The returned model predicts in float32."""
    cfg = TrainConfig(epochs=2, batch_size=8, augment=NO_AUG, learning_rate=1e-3, precision="mixed_bfloat16")
    result = fit(cfg, tiny_split(32), tiny_split(16, seed=1), checkpoint=tmp_path / "best.weights.h5", verbose=0)
    assert result.precision == "mixed_bfloat16"
    assert list(result.history["epoch"]) == [1, 2]
    assert {"loss", "mae", "val_loss", "val_mae"} <= set(result.history.columns)
    assert result.best_val_mae == pytest.approx(result.history["val_mae"].min(), rel=1e-5)
    assert result.best_epoch == int(result.history["val_mae"].idxmin()) + 1
    assert getattr(result.model, "optimizer", None) is None  # the saved model carries no optimizer state
    assert (tmp_path / "best.weights.h5").is_file()

    # Save/load round trip keeps predictions (preprocessing lives inside the model).
    path = tmp_path / "model.keras"
    result.model.save(path)
    loaded = load_model(path)
    x = tiny_split(4, seed=2).images
    pred = predict_ages(result.model, x)
    assert pred.dtype == np.float32 and np.isfinite(pred).all()
    np.testing.assert_allclose(predict_ages(loaded, x), pred, rtol=1e-5, atol=1e-4)
    assert input_size(loaded) == SIZE


def test_fit_refuses_empty_validation_split() -> None:
    with pytest.raises(DataError, match="val"):
        fit(TrainConfig(epochs=1, augment=NO_AUG), tiny_split(8), tiny_split(0), verbose=0)


def test_time_budget_stops_training_early() -> None:
    cfg = TrainConfig(backbone=TINY, epochs=5, batch_size=8, augment=NO_AUG, time_budget_minutes=0.001,
                      precision="float32")
    result = fit(cfg, tiny_split(16), tiny_split(8, seed=1), verbose=0)
    assert len(result.history) == 1


def test_time_budget_schedule_warms_up_then_decays() -> None:
    cfg = TrainConfig(learning_rate=1e-3, schedule="cosine")
    assert cosine_value(cfg, 0.0) == pytest.approx(1e-3)
    assert cosine_value(cfg, 0.5) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert cosine_value(cfg, 1.0) == pytest.approx(1e-5)
    assert cosine_value(dataclasses.replace(cfg, schedule="constant"), 0.7) == pytest.approx(1e-3)
    assert isinstance(TimeBudget(cfg, 60), keras.callbacks.Callback)


def test_tta_flip_averages_the_mirror_prediction() -> None:
    model = build_model(TrainConfig(augment=NO_AUG), SIZE, 30.0)
    x = tiny_split(3).images
    plain, mirror = predict_ages(model, x), predict_ages(model, x[:, :, ::-1])
    np.testing.assert_allclose(predict_ages(model, x, tta_flip=True), (plain + mirror) / 2, rtol=1e-4, atol=1e-3)


def test_xla_with_augmentation_layers_is_a_clear_error_not_a_silent_fallback() -> None:
    from faceage.model import compile_model

    cfg = TrainConfig(jit_compile=True, augment=dataclasses.replace(NO_AUG, flip=True, rotation=0.04))
    with pytest.raises(ConfigError, match="train.jit_compile.*RandomRotation"):
        compile_model(build_model(cfg, SIZE, 30.0), cfg, steps_per_epoch=1)
    plain = dataclasses.replace(cfg, augment=dataclasses.replace(NO_AUG, flip=True))
    model = build_model(plain, SIZE, 30.0)
    compile_model(model, plain, steps_per_epoch=1)
    assert model.jit_compile


def test_label_distribution_is_a_gaussian_around_the_age_and_the_loss_prefers_the_true_age() -> None:
    dist = keras.ops.convert_to_numpy(label_distribution(np.array([0.0, 17.0, 120.0])))
    assert dist.shape == (3, AGE_BINS)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, rtol=1e-5)
    assert list(dist.argmax(axis=1)) == [0, 17, 120]
    assert keras.ops.convert_to_numpy(expected_age(dist))[1] == pytest.approx(17.0, abs=1e-3)
    loss = AgeDistributionLoss()
    right = float(loss(np.array([17.0]), dist[1:2]))
    wrong = float(loss(np.array([40.0]), dist[1:2]))
    assert right < wrong and wrong - right > 23  # the L1 term alone adds the 23 years


def test_dex_head_outputs_a_distribution_that_starts_at_the_training_ages() -> None:
    ages = np.full(50, 40.0)
    model = build_model(TrainConfig(head="dex", augment=NO_AUG), SIZE, ages)
    out = model.predict(np.zeros((2, SIZE, SIZE, 3), "float32"), verbose=0)
    assert out.shape == (2, AGE_BINS)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    est = estimate(model, np.zeros((2, SIZE, SIZE, 3), "uint8"))
    assert est.probs is not None and est.ages.shape == (2,)
    bias = model.get_layer("age_logits").bias.numpy()  # the prior: the training ages' label distribution
    assert int(bias.argmax()) == 40 and bias[40] - bias[30] > 5
    np.testing.assert_allclose(est.p_under(18), est.probs[:, :18].sum(axis=1))


def test_fit_with_the_dex_head_trains_saves_and_reloads(tmp_path: Path) -> None:
    cfg = TrainConfig(backbone=TINY, head="dex", epochs=2, batch_size=8, augment=NO_AUG, precision="mixed_bfloat16",
                      early_stopping_patience=1)
    result = fit(cfg, tiny_split(32), tiny_split(16, seed=1), checkpoint=tmp_path / "best.weights.h5", verbose=0)
    assert (tmp_path / "best.weights.h5").is_file()  # the checkpoint knows a lower val_mae is better
    assert np.isfinite(result.history[["loss", "mae", "val_mae"]].to_numpy()).all()
    path = tmp_path / "model.keras"
    result.model.save(path)
    loaded = load_model(path)
    x = tiny_split(4, seed=2).images
    before, after = estimate(result.model, x, tta_flip=True), estimate(loaded, x, tta_flip=True)
    np.testing.assert_allclose(after.probs, before.probs, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(after.ages, after.probs @ np.arange(AGE_BINS), rtol=1e-5)



def test_gaussian_head_gives_the_age_and_a_spread_that_starts_at_the_training_ages() -> None:
    ages = np.array([10.0, 30.0, 50.0] * 20)
    model = build_model(TrainConfig(backbone=TINY, head="gaussian", augment=NO_AUG), SIZE, ages)
    est = estimate(model, np.zeros((2, SIZE, SIZE, 3), "uint8"), tta_flip=True)
    assert est.probs is None and est.gives_chance
    np.testing.assert_allclose(est.ages, 30.0, atol=0.5)          # the age head starts at the mean age
    np.testing.assert_allclose(est.spread, np.std(ages), rtol=0.05)  # sigma at the training ages' spread
    p_minor = est.p_under(18)                                        # N(30, 16.3^2): P(age < 18) = 0.23
    np.testing.assert_allclose(p_minor, 0.23, atol=0.02)


def test_gaussian_loss_is_the_age_loss_plus_the_likelihood_of_the_age_under_the_spread() -> None:
    from faceage.model import GaussianAgeLoss

    y_true, y_pred = np.array([20.0, 40.0]), np.array([[25.0, 5.0], [40.0, 2.0]], "float32")
    nll = np.log([5.0, 2.0]) + 0.5 * np.square([-5.0 / 5.0, 0.0])
    for name, age_loss in (("mse", [25.0, 0.0]), ("mae", [5.0, 0.0]), ("huber", [12.5, 0.0])):
        got = float(GaussianAgeLoss(name)(y_true, y_pred))
        assert got == pytest.approx(np.mean(np.add(age_loss, nll)), rel=1e-5), name
    # A spread that matches the error costs less than one that claims certainty.
    sure, fitting = np.array([[25.0, 0.5]], "float32"), np.array([[25.0, 5.0]], "float32")
    assert float(GaussianAgeLoss()(y_true[:1], fitting)) < float(GaussianAgeLoss()(y_true[:1], sure))


def test_gaussian_loss_trains_the_age_exactly_as_the_regression_loss() -> None:
    """The likelihood term sees the age through a stop-gradient: the age gets only train.loss's gradient."""
    import tensorflow as tf

    from faceage.model import GaussianAgeLoss

    y_true = tf.constant([20.0, 40.0])
    y_pred = tf.Variable([[25.0, 3.0], [38.0, 4.0]])
    with tf.GradientTape() as tape:
        loss = GaussianAgeLoss("mse")(y_true, y_pred)
    grad = tape.gradient(loss, y_pred).numpy()
    np.testing.assert_allclose(grad[:, 0], [2 * 5.0 / 2, 2 * -2.0 / 2], rtol=1e-5)  # d mean((p - y)^2) / dp
    # d/dsigma of log(sigma) + e^2 / (2 sigma^2), averaged: (1/sigma - e^2/sigma^3) / 2
    np.testing.assert_allclose(grad[:, 1], [(1 / 3 - 25 / 27) / 2, (1 / 4 - 4 / 64) / 2], rtol=1e-5)


@pytest.mark.parametrize("spread_trains_backbone", [True, False])
def test_fit_with_the_gaussian_head_trains_saves_and_reloads(tmp_path: Path, spread_trains_backbone: bool) -> None:
    cfg = TrainConfig(backbone=TINY, head="gaussian", epochs=2, batch_size=8, augment=NO_AUG,
                      precision="mixed_bfloat16", spread_trains_backbone=spread_trains_backbone)
    result = fit(cfg, tiny_split(32), tiny_split(16, seed=1), verbose=0)
    assert np.isfinite(result.history[["loss", "mae", "val_mae"]].to_numpy()).all()
    path = tmp_path / "model.keras"
    result.model.save(path)
    x = tiny_split(4, seed=2).images
    before, after = estimate(result.model, x), estimate(load_model(path), x)
    np.testing.assert_allclose(after.ages, before.ages, rtol=1e-4)
    np.testing.assert_allclose(after.spread, before.spread, rtol=1e-4)
    assert np.all(after.spread >= 0.5)
    # val_mae (what checkpoints, pruning and the best epoch watch) is the absolute error of the age column
    val = tiny_split(16, seed=1)
    mae = float(np.mean(np.abs(estimate(result.model, val.images).ages - val.ages)))
    assert mae == pytest.approx(result.best_val_mae, rel=0.02)  # trained in bf16, evaluated here in float32

def _backbone_after_training(cfg: TrainConfig, data: Split, steps: int = 4) -> list[np.ndarray]:
    from faceage.model import compile_model

    keras.utils.set_random_seed(cfg.seed)
    model = build_model(cfg, SIZE, data.ages)
    compile_model(model, cfg, steps_per_epoch=steps)
    model.fit(data.images.astype("float32"), data.ages, batch_size=len(data.ages) // steps, epochs=1, shuffle=False,
              verbose=0)
    return [np.asarray(w) for w in model.get_layer(TINY).get_weights()]


def test_a_spread_that_does_not_train_the_backbone_leaves_it_exactly_as_the_regression_head_trains_it() -> None:
    """train.spread_trains_backbone: false: the likelihood trains sigma's own layer only, so the backbone (and with
    it the age) gets the regression head's updates; with true (the measured default) it gets the likelihood's too."""
    data = tiny_split(32)
    base = TrainConfig(backbone=TINY, augment=NO_AUG, learning_rate=0.01, schedule="constant")
    regression = _backbone_after_training(base, data)
    detached = _backbone_after_training(dataclasses.replace(base, head="gaussian", spread_trains_backbone=False), data)
    attached = _backbone_after_training(dataclasses.replace(base, head="gaussian"), data)
    for r, d in zip(regression, detached):
        np.testing.assert_allclose(d, r, rtol=0, atol=1e-6)    # bit-identical on TensorFlow/CPU
    # sigma's kernel starts at zero, so the likelihood reaches the backbone from the second step: 1.7e-4 after 4
    assert max(float(np.max(np.abs(a - r))) for r, a in zip(regression, attached)) > 2e-5


def test_ages_10_to_30_can_weigh_more_in_the_loss() -> None:
    ages = np.array([5.0, 10.0, 17.0, 30.0, 31.0, 60.0], dtype="float32")
    assert age_weights(ages, 1.0) is None
    np.testing.assert_array_equal(age_weights(ages, 3.0), [1, 3, 3, 3, 1, 1])
    images = np.zeros((6, SIZE, SIZE, 3), "uint8")
    x, y, w = ArrayBatches(images, ages, 4, shuffle=False, weights=age_weights(ages, 3.0))[0]
    assert x.shape == (4, SIZE, SIZE, 3) and list(w) == [1, 3, 3, 3]
    assert len(ArrayBatches(images, ages, 4, shuffle=False)[0]) == 2
    cfg = TrainConfig(backbone=TINY, epochs=1, batch_size=4, augment=NO_AUG, weight_ages_10_30=3.0, precision="float32")
    result = fit(cfg, tiny_split(8), tiny_split(4, seed=1), verbose=0)
    assert np.isfinite(result.best_val_mae)


def test_random_erasing_blots_out_one_patch_of_some_faces_only_in_training() -> None:
    x = np.full((64, SIZE, SIZE, 3), 128.0, "float32")
    aug = augmentation(dataclasses.replace(NO_AUG, erase=0.5), seed=0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(aug(x, training=False)), x)
    out = keras.ops.convert_to_numpy(aug(x, training=True))
    changed = (out != 128.0).any(axis=-1)                     # (faces, rows, cols): pixels blotted out
    erased = changed.any(axis=(1, 2))
    assert 0.2 < erased.mean() < 0.8                          # about half the faces, chance 0.5
    area = changed[erased].mean(axis=(1, 2))
    assert area.max() <= 0.4 and area.min() > 0.0            # one patch of at most ~a third of the face


def test_mixup_blends_faces_ages_and_weights_with_the_same_weight() -> None:
    images = np.stack([np.full((2, 2, 3), v, "float32") for v in (0.0, 100.0, 200.0)])
    ages, weights = np.array([10.0, 40.0, 70.0], "float32"), np.array([1.0, 3.0, 1.0], "float32")
    lam, partner = np.array([1.0, 0.25, 0.5]), np.array([1, 2, 0])
    x, y, w = mix_up(images, ages, weights, lam, partner)
    np.testing.assert_allclose(x[:, 0, 0, 0], [0.0, 0.25 * 100 + 0.75 * 200, 0.5 * 200 + 0.5 * 0])
    np.testing.assert_allclose(y, [10.0, 0.25 * 40 + 0.75 * 70, 0.5 * 70 + 0.5 * 10])
    np.testing.assert_allclose(w, [1.0, 0.25 * 3 + 0.75 * 1, 1.0])


def test_mixup_and_label_jitter_change_training_batches_only_and_replay_with_the_seed() -> None:
    split = tiny_split(16)
    plain = ArrayBatches(split.images, split.ages, 8, shuffle=False)
    jittered = ArrayBatches(split.images, split.ages, 8, shuffle=False, seed=3, label_jitter=2.0)
    x0, y0 = plain[0]
    x1, y1 = jittered[0]
    np.testing.assert_array_equal(x1, x0)
    assert 0.3 < np.abs(y1 - y0).mean() < 4.0 and (y1 >= 0).all()
    np.testing.assert_array_equal(ArrayBatches(split.images, split.ages, 8, shuffle=False, seed=3, label_jitter=2.0)[0][1], y1)
    jittered.on_epoch_end()
    assert not np.array_equal(jittered[0][1], y1)             # new noise every epoch
    mixed = ArrayBatches(split.images, split.ages, 8, shuffle=False, seed=3, mixup=0.4)
    xm, ym = mixed[0]
    assert xm.shape == x0.shape and not np.allclose(xm, x0)
    assert ym.min() >= y0.min() - 1e-4 and ym.max() <= y0.max() + 1e-4   # blends stay inside the batch's ages
    cfg = TrainConfig(backbone=TINY, epochs=1, batch_size=8, precision="float32",
                      augment=dataclasses.replace(NO_AUG, erase=0.5, mixup=0.4, label_jitter=1.0))
    assert np.isfinite(fit(cfg, split, tiny_split(4, seed=1), verbose=0).best_val_mae)


def test_shifted_views_repeat_the_edge_and_tta_averages_every_view() -> None:
    from faceage.inference import shifted, tta_views

    x = np.arange(16, dtype="uint8").reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(shifted(x, 1, 0)[0, :, :, 0], [[0, 1, 2, 3], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    np.testing.assert_array_equal(shifted(x, 0, -1)[0, :, 0, 0], [1, 5, 9, 13])
    assert tta_views(False, 0) == [(False, 0, 0)] and len(tta_views(True, 2)) == 10
    model = build_model(TrainConfig(augment=NO_AUG), SIZE, 30.0)
    faces = tiny_split(3).images
    views = [predict_ages(model, shifted(faces, dy, dx)[:, :, ::-1] if flip else shifted(faces, dy, dx))
             for flip, dy, dx in tta_views(True, 1)]
    np.testing.assert_allclose(estimate(model, faces, tta_flip=True, tta_shift_px=1).ages, np.mean(views, axis=0),
                               rtol=1e-4, atol=1e-3)
