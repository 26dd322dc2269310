"""The age model: input pixels (0-255, RGB) -> augmentation (training only) -> backbone preprocessing ->
backbone (ResNet50 by default) -> age head. The preprocessing lives inside the saved model, so whatever
serves it needs only decoded, resized RGB pixels.

Three heads (`train.head`): `regression` outputs the age (shape (n, 1)); `dex` outputs a probability for every
whole age 0-120 (shape (n, 121), "DEX": Rothe et al. 2015), trained on a Gaussian label distribution around
the true age plus the absolute error of the expected age (DLDL-v2, Gao et al. 2018), its age being the expected
value; `gaussian` outputs the age and a spread sigma in years (shape (n, 2)): the age output gets exactly the
gradient of `train.loss`, as the regression head's, sigma the Gaussian negative log-likelihood of the true age
around the (gradient-stopped) age, so it learns how far off the age tends to be for such a face (heteroscedastic
regression, Kendall & Gal 2017). By default the likelihood's gradient still reaches the shared backbone through
sigma, so the features, and the age, are not identical to a regression model's (measured: BENCHMARKS.md);
`train.spread_trains_backbone: false` cuts it there (sigma reads gradient-stopped features), so the backbone and the
age are trained exactly as the regression head's and sigma is a spread learned on top of them. dex and gaussian
say how sure they are: P(age < 18) can drive the ID check (faceage.policy, `policy.decide_on: chance`).

Plain Keras 3 (keras.ops and layers only), so it runs on the TensorFlow or the JAX backend.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from faceage.ages import MAX_AGE
from faceage.config import AugmentConfig, TrainConfig
from faceage.errors import ConfigError

# ImageNet channel means (BGR order) used by the "caffe" preprocessing of keras.applications.ResNet50.
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
HUBER_DELTA_YEARS = 5.0
AGE_BINS = MAX_AGE + 1          # the dex head: one probability per whole age 0..MAX_AGE
DEX_SIGMA_YEARS = 2.0           # spread of the Gaussian label distribution around the true age
DEX_L1_WEIGHT = 1.0             # weight of |expected age - true age| beside the cross-entropy
MIN_SPREAD_YEARS = 0.5          # the gaussian head's sigma is softplus(.) + this: never zero, so the NLL stays finite


@keras.saving.register_keras_serializable(package="faceage")
class StopGradient(layers.Layer):
    """Passes its input on unchanged, and no gradient back: a head reading features through it cannot train them."""

    def call(self, x):
        return ops.stop_gradient(x)


@keras.saving.register_keras_serializable(package="faceage")
class CaffePreprocess(layers.Layer):
    """RGB 0-255 -> BGR minus the ImageNet mean: what ResNet50's ImageNet weights expect."""

    def call(self, x):
        x = ops.flip(ops.cast(x, self.compute_dtype), axis=-1)
        return x - ops.convert_to_tensor(IMAGENET_BGR_MEAN, dtype=self.compute_dtype)


def augmentation(cfg: AugmentConfig, seed: int) -> keras.Sequential:
    """Random transforms of the pixels from params; active only in training (Keras skips them at inference).
    mixup and label jitter change the ages too, so they live in the training batches (faceage.train)."""
    steps: list[layers.Layer] = []
    if cfg.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if cfg.rotation > 0:
        steps.append(layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed + 1))
    if cfg.zoom > 0:
        steps.append(layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=seed + 2))
    if cfg.shift > 0:
        steps.append(layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="reflect", seed=seed + 3))
    if cfg.brightness > 0:
        steps.append(layers.RandomBrightness(cfg.brightness, value_range=(0, 255), seed=seed + 4))
    if cfg.contrast > 0:
        steps.append(layers.RandomContrast(cfg.contrast, seed=seed + 5))
    if cfg.erase > 0:
        # Zhong et al. 2017: with chance `erase`, one rectangle (2-33% of the face) becomes noise.
        steps.append(layers.RandomErasing(factor=(cfg.erase, cfg.erase), value_range=(0, 255), seed=seed + 6))
    return keras.Sequential(steps, name="augment")


def _weights_arg(weights: str | None) -> str | None:
    """Pretrained weights only from a local file: this project never downloads at run time."""
    if weights is None:
        return None
    path = Path(weights)
    if not path.is_file():
        raise ConfigError(
            f"train.weights: file not found: {weights}; give a local copy of the backbone's ImageNet 'notop' "
            "weights (e.g. resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5) or null to train from scratch"
        )
    return str(path)


def backbone(cfg: TrainConfig, image_size: int) -> tuple[keras.Model, layers.Layer | None]:
    """The feature extractor (global-average-pooled) and the preprocessing layer it expects."""
    shape = (image_size, image_size, 3)
    weights = _weights_arg(cfg.weights)
    if cfg.backbone == "resnet50":
        net = keras.applications.ResNet50(include_top=False, weights=weights, input_shape=shape, pooling="avg")
        return net, CaffePreprocess(name="preprocess")
    if cfg.backbone == "mobilenet_v3_small":
        net = keras.applications.MobileNetV3Small(include_top=False, weights=weights, input_shape=shape,
                                                  pooling="avg", include_preprocessing=True)
        # Keras hard-codes BatchNorm momentum 0.999 here, far too slow to settle when training from scratch.
        for layer in net.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
        return net, None
    if cfg.backbone == "tiny_cnn":
        return tiny_cnn(shape, weights), None
    raise ConfigError(f"train.backbone: {cfg.backbone!r} is not supported")


def tiny_cnn(shape: tuple[int, int, int], weights: str | None = None) -> keras.Model:
    """Three strided conv blocks (16-32-64 filters, ~25k weights): for smoke runs and the tests, where a real
    backbone's graph tracing dominates (MobileNetV3Small ~40 s per model on a slow 2-core CPU, this one ~2 s).
    Not a quality model: never measured on real faces."""
    inputs = keras.Input(shape=shape)
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
    net = keras.Model(inputs, layers.GlobalAveragePooling2D()(x), name="tiny_cnn")
    if weights is not None:
        net.load_weights(weights)
    return net


def build_model(cfg: TrainConfig, image_size: int, train_ages: np.ndarray | float) -> keras.Model:
    """Assemble the full model. The head starts at the training ages (their mean, or their smoothed histogram
    for dex), so epoch 1 starts sane."""
    inputs = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
    augment = augmentation(cfg.augment, cfg.seed)
    x = augment(inputs) if augment.layers else inputs
    net, preprocess = backbone(cfg, image_size)
    if preprocess is not None:
        x = preprocess(x)
    x = net(x)
    if cfg.head == "dex":
        prior = np.log(ops.convert_to_numpy(label_distribution(np.asarray(train_ages, "float32"))).mean(axis=0) + 1e-6)
        logits = layers.Dense(AGE_BINS, dtype="float32", bias_initializer=keras.initializers.Constant(prior),
                              name="age_logits")(x)
        out = layers.Softmax(dtype="float32", name="age_probs")(logits)
    else:
        ages = np.asarray(train_ages, "float32")
        out = layers.Dense(1, dtype="float32", bias_initializer=keras.initializers.Constant(float(np.mean(ages))),
                           name="age")(x)
        if cfg.head == "gaussian":
            features = x if cfg.spread_trains_backbone else StopGradient(name="spread_features")(x)
            out = layers.Concatenate(dtype="float32", name="age_and_spread")([out, _spread(features, float(np.std(ages)))])
    return keras.Model(inputs, out, name=f"faceage_{cfg.backbone}")


def _spread(features, start: float):
    """The gaussian head's sigma (years): softplus(dense) + MIN_SPREAD_YEARS, starting at `start` for every face
    (the spread of the training ages: what a constant guess is off by)."""
    start = max(start - MIN_SPREAD_YEARS, 1.0)
    raw = layers.Dense(1, dtype="float32", kernel_initializer="zeros",
                       bias_initializer=keras.initializers.Constant(float(np.log(np.expm1(start)))),  # softplus^-1
                       name="spread_raw")(features)
    return layers.Rescaling(1.0, offset=MIN_SPREAD_YEARS, dtype="float32", name="spread")(
        layers.Activation("softplus", dtype="float32")(raw))


def label_distribution(ages, sigma: float = DEX_SIGMA_YEARS):
    """Gaussian over the whole ages 0..MAX_AGE around each age, normalised (works on numpy arrays and tensors)."""
    ages = ops.reshape(ops.cast(ages, "float32"), (-1, 1))
    bins = ops.reshape(ops.arange(AGE_BINS, dtype="float32"), (1, -1))
    weights = ops.exp(-0.5 * ops.square((bins - ages) / sigma))
    return weights / ops.sum(weights, axis=-1, keepdims=True)


def expected_age(probs):
    """The age of a dex output: the expected value of its distribution."""
    return ops.sum(ops.cast(probs, "float32") * ops.arange(AGE_BINS, dtype="float32"), axis=-1)


@keras.saving.register_keras_serializable(package="faceage")
class AgeDistributionLoss(keras.losses.Loss):
    """Cross-entropy against the Gaussian label distribution + DEX_L1_WEIGHT x |expected age - age|."""

    def call(self, y_true, y_pred):
        ages = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        probs = ops.clip(ops.cast(y_pred, "float32"), 1e-7, 1.0)
        cross_entropy = -ops.sum(label_distribution(ages) * ops.log(probs), axis=-1)
        return cross_entropy + DEX_L1_WEIGHT * ops.abs(expected_age(probs) - ages)


def _age_loss(name: str, ages, predicted):
    """`train.loss` per face (Keras's own loss functions), on (n,) tensors."""
    ages, predicted = ops.reshape(ages, (-1, 1)), ops.reshape(predicted, (-1, 1))
    if name == "mse":
        return keras.losses.mean_squared_error(ages, predicted)
    if name == "mae":
        return keras.losses.mean_absolute_error(ages, predicted)
    return keras.losses.huber(ages, predicted, delta=HUBER_DELTA_YEARS)


@keras.saving.register_keras_serializable(package="faceage")
class GaussianAgeLoss(keras.losses.Loss):
    """The gaussian head's loss: `train.loss` on the age (column 0) + the negative log-likelihood of the true age
    under N(age, sigma^2) (sigma: column 1), with the age's gradient stopped in the second term: the age output
    gets only `train.loss`'s gradient, sigma (and, through it, the backbone) the likelihood's."""

    def __init__(self, age_loss: str = "mse", **kwargs):
        super().__init__(**kwargs)
        self.age_loss = age_loss

    def call(self, y_true, y_pred):
        ages = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        y_pred = ops.cast(y_pred, "float32")
        age, spread = y_pred[:, 0], y_pred[:, 1]
        nll = ops.log(spread) + 0.5 * ops.square((ages - ops.stop_gradient(age)) / spread)
        return _age_loss(self.age_loss, ages, age) + nll

    def get_config(self) -> dict:
        return {**super().get_config(), "age_loss": self.age_loss}


def _expected_age_error(y_true, y_pred):
    return ops.abs(expected_age(y_pred) - ops.reshape(ops.cast(y_true, "float32"), (-1,)))


def _first_column_error(y_true, y_pred):
    return ops.abs(ops.cast(y_pred, "float32")[:, 0] - ops.reshape(ops.cast(y_true, "float32"), (-1,)))


def loss_fn(name: str, head: str = "regression") -> keras.losses.Loss:
    """The training loss: `train.loss` on the age (regression and gaussian heads); the dex head has its own."""
    if head == "dex":
        return AgeDistributionLoss()
    if head == "gaussian":
        return GaussianAgeLoss(name)
    if name == "mse":
        return keras.losses.MeanSquaredError()
    if name == "mae":
        return keras.losses.MeanAbsoluteError()
    return keras.losses.Huber(delta=HUBER_DELTA_YEARS)


def learning_rate(cfg: TrainConfig, steps_per_epoch: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """Constant, or cosine decay to 1% after a linear warm-up of `warmup_epochs`.

    With a time budget the TimeBudget callback sets the rate during training, so it starts as a variable.
    """
    if cfg.schedule == "constant" or cfg.time_budget_minutes > 0:
        return cfg.learning_rate
    warmup = min(cfg.warmup_epochs, cfg.epochs - 1) * steps_per_epoch
    total = cfg.epochs * steps_per_epoch
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(cfg.learning_rate, decay_steps=total, alpha=0.01)
    return keras.optimizers.schedules.CosineDecay(
        cfg.learning_rate / 100, decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=cfg.learning_rate, warmup_steps=warmup,
    )


def age_error_metric(head: str) -> keras.metrics.Metric:
    """`mae`: the absolute error of the age the head gives (what val_mae, checkpoints and pruning watch)."""
    if head == "dex":
        return keras.metrics.MeanMetricWrapper(_expected_age_error, name="mae")
    if head == "gaussian":
        return keras.metrics.MeanMetricWrapper(_first_column_error, name="mae")
    return keras.metrics.MeanAbsoluteError(name="mae")


def compile_model(model: keras.Model, cfg: TrainConfig, steps_per_epoch: int) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate(cfg, steps_per_epoch)),
        loss=loss_fn(cfg.loss, cfg.head),
        metrics=[age_error_metric(cfg.head)],
        jit_compile=cfg.jit_compile,
    )
    if cfg.jit_compile and not model.jit_compile:
        # Keras only warns and trains without XLA; say it plainly instead of measuring something else.
        blockers = sorted({type(layer).__name__ for layer in model._flatten_layers() if not layer.supports_jit})
        raise ConfigError(f"train.jit_compile: true, but Keras cannot XLA-compile this model ({', '.join(blockers)} "
                          "do not support it); set train.jit_compile: false or turn train.augment rotation, zoom "
                          "and shift off (flip, brightness and contrast are fine)")
