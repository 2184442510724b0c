"""PIEA: progressive image enhancement under aesthetic guidance (Du et al., ICMR 2019).

PIEA trains nothing. For each photo it searches the parameters of EXPOSURE's eight
differentiable filters (`enhancers.filters`, section 3.1, Eq. 1) by gradient steps on the loss
L = (10 - S)^2 (Eq. 3), where S is the mean score of a frozen NIMA (section 3.2, Eq. 4):

    initialise the filter parameters (every filter the identity, exposure +1 EV; section 4.1)
    repeat M = 20 times (Algorithm 1):
        A = F_8(... F_1(R | pi_1) ... | pi_8)          # phase 1, Eq. 1
        S = NIMA(A); L = (10 - S)^2                    # phase 2, Eqs. 2-4
        pi_i <- pi_i - lambda dL/dpi_i, lambda = 1e-3  # phase 3, Eq. 5

The parameters stepped are the filters' unconstrained ("raw") variables, which the filters map
into their ranges (DESIGN.md, PIEA). The output is the enhanced photo plus every filter's
parameters in natural units at every iteration: the "interpretable adjusting strategy" of
Figure 4, and a recipe that `enhancers.filters.apply` replays exactly.

What `enhance` records: scores[:, t] is the NIMA mean score of the photo rendered with the
parameters after t updates, t = 0..M (t = 0: the initial parameters, exposure +1 EV already
applied), and parameters[t] those parameters. The returned photos are rendered with the
parameters after the last update, so their score is scores[:, M]: Algorithm 1 as written
returns the image of the last iteration's phase 1 together with the parameters after its
phase 3; one extra NIMA forward pass makes the photo and the recipe agree.

The photo is scored at its own size (section 4.1: "we do not resize the raw images").
`proxy_size` scores a copy whose longer side is `proxy_size` pixels instead and applies the
parameters found to the full-size photo (the filters are resolution independent), as EXPOSURE
does for speed; the scores are then the proxy's.

Photos of the same size are enhanced together with independent parameters: the loss summed
over the batch has, for each photo's parameters, that photo's own gradient.
"""
import dataclasses
import weakref

import keras
import numpy as np
import tensorflow as tf

import nima
from enhancers import filters

ITERATIONS = 20  # M, section 4.1
LEARNING_RATE = 1e-3  # lambda, section 4.1
MAX_SCORE = 10.0  # S-bar, the highest NIMA mean score (section 3.2)
PAPER_BACKBONE = "inception_v2"  # section 3.2: NIMA (Inception-v2)


@dataclasses.dataclass
class PieaResult:
    """What `enhance` returns (module docstring).

    images: float32 [batch, h, w, 3], the enhanced photos in [0, 1].
    scores: float64 [batch, iterations + 1], NIMA mean score after t updates, t = 0..M.
    parameters: list of iterations + 1 dicts, filter name -> float32 [batch, *param_shape],
      natural units (`enhancers.filters`), after t updates.
    """

    images: np.ndarray
    scores: np.ndarray
    parameters: list

    @property
    def iterations(self):
        return len(self.parameters) - 1

    def photo_parameters(self, index, iteration=-1):
        """Photo `index`'s natural-unit parameter dict after `iteration` updates (default: last)."""
        return {name: values[index] for name, values in self.parameters[iteration].items()}


def loss_from_scores(scores):
    """Eq. 3: L = (10 - S)^2 per photo."""
    return tf.square(MAX_SCORE - scores)


class _CompiledSteps:
    """The `tf.function`s of Algorithm 1 for one frozen NIMA model.

    Photos come as their planar logs ([batch, 3, h, w], `filters.planar_logs`, taken once per
    `enhance` call): the filters mix the three channels in every pixel, which is several times
    cheaper on a CPU with each channel a contiguous plane than with channels innermost, and
    the first three filters read the photo through its logarithm. Only the filtered photo is
    transposed back for NIMA. Fixed input signatures (logs [None, 3, None, None], raw
    parameters [None, *param_shape]) mean nothing is retraced between iterations, photos,
    batch sizes or image sizes.
    """

    def __init__(self, nima_model):
        self.nima_model = nima_model
        logs_spec = tf.TensorSpec([None, 3, None, None], tf.float32)
        raw_spec = {f.name: tf.TensorSpec([None, *f.param_shape], tf.float32)
                    for f in filters.FILTERS}
        signature = [logs_spec, raw_spec]
        self.scores_and_gradients = tf.function(self._scores_and_gradients,
                                                input_signature=signature)
        self.plain_step = tf.function(
            self._plain_step, input_signature=signature + [tf.TensorSpec([], tf.float32)])
        self.render_and_score = tf.function(self._render_and_score, input_signature=signature)
        self.render = tf.function(self._render, input_signature=signature)

    def _score(self, images):
        return nima.mean_score(self.nima_model(images, training=False))

    @staticmethod
    def _render(logs, raw):
        return filters.from_planar(filters.apply_raw_planar_logs(logs, raw))

    def _scores_and_gradients(self, logs, raw):
        """Phases 1 and 2, and dL/dpi for phase 3 (Eqs. 1-5), for every photo of the batch;
        also the natural parameters pi, for the history."""
        with tf.GradientTape() as tape:
            tape.watch(raw)
            scores = self._score(self._render(logs, raw))
            loss = tf.reduce_sum(loss_from_scores(scores))  # photo i's loss depends on pi^(i) only
        return scores, tape.gradient(loss, raw), filters.natural_parameters(raw)

    def _plain_step(self, logs, raw, learning_rate):
        """One iteration of Algorithm 1 with the paper's plain step pi -= lambda dL/dpi, in one
        call: the scores and natural parameters before the step, and the stepped raw values."""
        scores, gradients, natural = self._scores_and_gradients(logs, raw)
        stepped = {name: raw[name] - learning_rate * gradients[name] for name in raw}
        return scores, natural, stepped

    def _render_and_score(self, logs, raw):
        enhanced = self._render(logs, raw)
        return enhanced, self._score(enhanced), filters.natural_parameters(raw)


_COMPILED = weakref.WeakKeyDictionary()  # NIMA model -> its _CompiledSteps


def _compiled_steps(nima_model):
    steps = _COMPILED.get(nima_model)
    if steps is None:
        steps = _COMPILED[nima_model] = _CompiledSteps(nima_model)
    return steps


class PieaEnhancer:
    """Algorithm 1 around one frozen NIMA model (module docstring).

    Args:
      nima_model: a NIMA Keras model, float [0, 1] images -> (batch, 10) distribution. It is
        called with training=False and never changed. Its compiled steps are cached, so any
        number of enhancers and calls share one trace.
      iterations: M.
      learning_rate: lambda of the plain gradient step.
      optimizer: None for the paper's plain step pi -= lambda dL/dpi, or a Keras optimizer
        used as a template: each call of `enhance` starts from a fresh copy of it (its own
        learning rate applies, `learning_rate` is ignored).
      proxy_size: None (score each photo at its own size, the paper) or the longer side in
        pixels of the downscaled copy that is scored instead.
    """

    def __init__(self, nima_model, iterations=ITERATIONS, learning_rate=LEARNING_RATE,
                 optimizer=None, proxy_size=None):
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        if proxy_size is not None and proxy_size < 32:
            raise ValueError(f"proxy_size must be at least 32 pixels, got {proxy_size}")
        if optimizer is not None and not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"optimizer must be None or a keras.optimizers.Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.nima_model = nima_model
        self.iterations = int(iterations)
        self.learning_rate = float(learning_rate)
        self.optimizer = optimizer
        self.proxy_size = proxy_size
        self._steps = _compiled_steps(nima_model)

    def _proxy(self, images):
        height, width = images.shape[1:3]
        scale = self.proxy_size / max(height, width)
        if scale >= 1:
            return images
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return tf.image.resize(images, size, method="area")

    def enhance(self, images):
        """Enhances a batch of same-size photos, float [batch, h, w, 3] in [0, 1] (or one
        (h, w, 3) photo, returned with a batch axis of 1). Returns a `PieaResult`."""
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape.rank == 3:
            images = images[tf.newaxis]
        if images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected RGB images [batch, h, w, 3], got shape {images.shape}")
        scored = filters.planar_logs(images if self.proxy_size is None else self._proxy(images))
        steps = self._steps

        raw = {name: tf.constant(value)
               for name, value in filters.initial_raw_parameters(images.shape[0]).items()}
        optimizer = None
        if self.optimizer is not None:
            optimizer = self.optimizer.__class__.from_config(self.optimizer.get_config())
            raw = {name: tf.Variable(value, name=name) for name, value in raw.items()}
        learning_rate = tf.constant(self.learning_rate, tf.float32)
        history, all_scores = [], []
        for iteration in range(self.iterations):
            if optimizer is None:
                scores, natural, raw = steps.plain_step(scored, raw, learning_rate)
            else:
                scores, gradients, natural = steps.scores_and_gradients(scored, raw)
                optimizer.apply_gradients([(gradients[name], raw[name]) for name in raw])
            _check_finite(scores, iteration)
            all_scores.append(scores.numpy())
            history.append(_numpy(natural))
        if self.proxy_size is None:
            enhanced, scores, natural = steps.render_and_score(scored, raw)
        else:
            enhanced = steps.render(filters.planar_logs(images), raw)
            _, scores, natural = steps.render_and_score(scored, raw)
        history.append(_numpy(natural))
        _check_finite(scores, self.iterations)
        all_scores.append(scores.numpy())
        return PieaResult(
            images=np.clip(enhanced.numpy(), 0.0, 1.0),
            scores=np.stack(all_scores, axis=1).astype(np.float64),
            parameters=history,
        )


def _numpy(natural):
    return {name: value.numpy() for name, value in natural.items()}


def _check_finite(scores, iteration):
    scores = scores.numpy()
    if not np.all(np.isfinite(scores)):
        raise FloatingPointError(f"PIEA: non-finite NIMA score after {iteration} updates "
                                 f"({scores.tolist()}); try a smaller learning rate")


def enhance(images, nima_model, iterations=ITERATIONS, learning_rate=LEARNING_RATE,
            optimizer=None, proxy_size=None):
    """Algorithm 1 on a batch of same-size photos; see `PieaEnhancer` and the module docstring.

    Returns a `PieaResult`: the enhanced images, the NIMA score of every photo at every
    iteration (iteration 0 included) and the natural-unit parameters of every photo at every
    iteration.
    """
    return PieaEnhancer(nima_model, iterations, learning_rate, optimizer,
                        proxy_size).enhance(images)


def load_nima(nima_weights=None, backbone=PAPER_BACKBONE):
    """The NIMA model that guides PIEA, and a line saying which it is.

    `nima_weights` is a whole-NIMA weights file (`model.save_weights`, `train.nima`'s output)
    for `backbone`; None gives the demo NIMA (`nima.demo_model()`, a MobileNet trained on the
    embedded demo set; trained into a cache on first use; `backbone` is then unused), which is
    said in the returned line and logged, since it is a stand-in for a NIMA trained on AVA.
    """
    return nima.load_nima_model(nima_weights or nima.DEMO_WEIGHTS, backbone)
