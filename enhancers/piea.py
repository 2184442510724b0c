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
parameters after t updates, t = 0..M (t = 0: the initial parameters, exposure already
applied), and parameters[t] those parameters; input_scores the score of each photo as given,
unfiltered (the "before" figure everywhere). Algorithm 1 as written returns the image of the
last iteration's phase 1 together with the parameters after its phase 3; one extra NIMA
forward pass scores the parameters after the last update, so that photo and recipe agree.

Beyond the paper (ours; the paper's behaviour stays available):
- select="best" (default) returns, per photo, the highest-scoring candidate among the input
  itself (`filters.identity_parameters`: returned exactly as given) and the M + 1 iterates; an
  iterate must score at least `min_gain` (MIN_SCORE_GAIN) higher than the input to be
  returned. PIEA must never hand back a photo its own guide scores lower than what it was
  given: with a +1 EV start a bright photo can be blown out, and a saturated guide then gives
  no gradient to bring it back. Nor an edit for a gain the guide gives a photo that was not
  edited: the demo NIMA's score moves by up to 0.026 when a held-out photo is mirrored or
  loses a 2-pixel border, and on the held-out flower PIEA's best iterate (+0.018) brightened the
  petals to white.
  select="final" returns the last iterate, as Algorithm 1.
- initial_exposure="auto" starts from an exposure chosen from the photo (`auto_exposure`)
  instead of the paper's +1 EV (section 4.1: "we roughly initialize the parameter of exposure
  filter with 1.0"; the paper leaves "a proper way to initialize the luminance" to future
  work). A number is used as given; the default 1.0 is the paper's.
- warnings: a guide whose score stays at one value over the iterations
  (SCORE_STUCK_TOLERANCE) or whose loss gradient w.r.t. the filter parameters at the start is
  below GRADIENT_FLOOR gives PIEA no direction; this is logged, naming the photo, and kept in
  `PieaResult.warnings` (and in the recipe), as is a final iterate (select="final") scoring
  below the input.

The photo is scored at its own size (section 4.1: "we do not resize the raw images").
`proxy_size` scores a copy whose longer side is `proxy_size` pixels instead and applies the
parameters found to the full-size photo (the filters are resolution independent), as EXPOSURE
does for speed; the scores are then the proxy's.

Photos of the same size are enhanced together with independent parameters: the loss summed
over the batch has, for each photo's parameters, that photo's own gradient.
"""
import dataclasses
import math
import numbers
import weakref

import keras
import numpy as np
import tensorflow as tf

from absl import logging

import nima
from enhancers import filters

ITERATIONS = 20  # M, section 4.1
LEARNING_RATE = 1e-3  # lambda, section 4.1
MAX_SCORE = 10.0  # S-bar, the highest NIMA mean score (section 3.2)
PAPER_BACKBONE = "inception_v2"  # section 3.2: NIMA (Inception-v2)
INITIAL_EXPOSURE = 1.0  # EV, section 4.1
SELECTIONS = ("best", "final")  # which candidate `enhance` returns (module docstring)
# Ours (module docstring): with select="best", the least score gain over the input for which an
# iterate is returned instead of the input; twice the largest move of the demo NIMA's score
# over the held-out photos mirrored or cropped by 2 pixels (0.026).
MIN_SCORE_GAIN = 0.05
# Ours (module docstring): the warnings' thresholds, and the rule of initial_exposure="auto".
SCORE_STUCK_TOLERANCE = 1e-4  # the scores of all iterates within this: the guide is stuck
GRADIENT_FLOOR = 1e-6  # |dL/dpi| at the start below this: the guide gives no direction
AUTO_TARGET_LUMINANCE = 0.45  # initial_exposure="auto" brightens or darkens the mean to this
AUTO_BRIGHT_PERCENTILE = 99.0  # ... but never pushes this percentile of luminance past 1
AUTO_EXPOSURE_LIMIT = 1.0  # ... and starts within +-1 EV


@dataclasses.dataclass
class PieaResult:
    """What `enhance` returns (module docstring).

    images: float32 [batch, h, w, 3], the returned photos in [0, 1]: per photo the selected
      candidate (the input itself, exactly, or an iterate rendered at full size).
    scores: float64 [batch, iterations + 1], NIMA mean score after t updates, t = 0..M.
    parameters: list of iterations + 1 dicts, filter name -> float32 [batch, *param_shape],
      natural units (`enhancers.filters`), after t updates.
    input_scores: float64 [batch], the NIMA mean score of each photo as given (unfiltered, at
      the size scored: the proxy's with proxy_size), the "before" figure.
    selected_iterations: per photo the iterate returned, t in 0..M, or None for the input
      itself.
    output_scores: float64 [batch], the score of each returned photo (at the size scored).
    selections: per photo, in words, which candidate was returned and why.
    initial_exposures: float64 [batch], the exposure each photo started from, in EV.
    gradient_norms: float64 [batch], |dL/dpi| over all raw filter parameters at the start (NaN
      with no iteration).
    warnings: per photo, a list of warnings in words (module docstring); empty if none.
    select: "best" or "final".
    """

    images: np.ndarray
    scores: np.ndarray
    parameters: list
    input_scores: np.ndarray
    selected_iterations: list
    output_scores: np.ndarray
    selections: list
    initial_exposures: np.ndarray
    gradient_norms: np.ndarray
    warnings: list
    select: str = "best"

    @property
    def iterations(self):
        return len(self.parameters) - 1

    def photo_parameters(self, index, iteration=-1):
        """Photo `index`'s natural-unit parameter dict after `iteration` updates (default: last)."""
        return {name: values[index] for name, values in self.parameters[iteration].items()}

    def selected_parameters(self, index):
        """The natural-unit parameters that render photo `index`'s returned image: those of
        the selected iterate, or `filters.identity_parameters()` when the input was returned."""
        iteration = self.selected_iterations[index]
        if iteration is None:
            return filters.identity_parameters()
        return self.photo_parameters(index, iteration)


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
        self.score = tf.function(self._score, input_signature=[
            tf.TensorSpec([None, None, None, 3], tf.float32)])

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
        call: the scores, natural parameters and gradient norms (`gradient_norms`) before the
        step, and the stepped raw values."""
        scores, gradients, natural = self._scores_and_gradients(logs, raw)
        stepped = {name: raw[name] - learning_rate * gradients[name] for name in raw}
        return scores, natural, gradient_norms(gradients), stepped

    def _render_and_score(self, logs, raw):
        enhanced = self._render(logs, raw)
        return enhanced, self._score(enhanced), filters.natural_parameters(raw)


def gradient_norms(gradients):
    """Per photo, the Euclidean norm of dL/dpi over every filter's raw parameters."""
    return tf.sqrt(tf.add_n([tf.reduce_sum(tf.reshape(tf.square(g), [tf.shape(g)[0], -1]), -1)
                             for g in gradients.values()]))


def auto_exposure(images):
    """initial_exposure="auto" (ours, module docstring): per photo, the EV that brings the mean
    luminance to AUTO_TARGET_LUMINANCE (0.45), lowered where needed so that the 99th percentile
    of luminance is not pushed past 1, within +-1 EV: clip(min(log2(0.45 / mean),
    log2(1 / p99)), -1, 1). Dark photos get a brighter start (the paper's reason for +1 EV),
    bright ones a darker one, and no start blows out the brightest 1% of a photo.
    Deterministic; float64 [batch] from float images [batch, h, w, 3]."""
    lum = np.asarray(filters.luminance(images), np.float64).reshape(len(images), -1)
    lum = np.clip(lum, 0.0, 1.0)
    mean = np.maximum(lum.mean(axis=1), 1e-4)
    bright = np.maximum(np.percentile(lum, AUTO_BRIGHT_PERCENTILE, axis=1), 1e-4)
    ev = np.minimum(np.log2(AUTO_TARGET_LUMINANCE / mean), np.log2(1.0 / bright))
    return np.clip(ev, -AUTO_EXPOSURE_LIMIT, AUTO_EXPOSURE_LIMIT)


def parse_initial_exposure(value):
    """`initial_exposure` from a number or a flag's text: a float in EV, or "auto"."""
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return "auto"
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"initial_exposure must be a number of EV or 'auto', got {value!r}")
    if not isinstance(value, numbers.Real) or not math.isfinite(value) or not (
            -filters.EXPOSURE_RANGE < value < filters.EXPOSURE_RANGE):
        raise ValueError(f"initial_exposure must be 'auto' or a number of EV in "
                         f"(-{filters.EXPOSURE_RANGE}, {filters.EXPOSURE_RANGE}), got {value!r}")
    return float(value)


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
      initial_exposure: the exposure the search starts from, in EV (default 1.0, the paper's),
        or "auto" (`auto_exposure`, ours).
      select: "best" (default, ours): return the highest-scoring of the input and the iterates;
        "final": the last iterate, as Algorithm 1.
      min_gain: with select="best", an iterate is returned only if it scores at least this
        much higher than the input (MIN_SCORE_GAIN; 0: any gain).
    """

    def __init__(self, nima_model, iterations=ITERATIONS, learning_rate=LEARNING_RATE,
                 optimizer=None, proxy_size=None, initial_exposure=INITIAL_EXPOSURE,
                 select="best", min_gain=MIN_SCORE_GAIN):
        if iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {iterations}")
        if proxy_size is not None and proxy_size < 32:
            raise ValueError(f"proxy_size must be at least 32 pixels, got {proxy_size}")
        if optimizer is not None and not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(f"optimizer must be None or a keras.optimizers.Optimizer, got "
                            f"{type(optimizer).__name__}")
        if select not in SELECTIONS:
            raise ValueError(f"select must be one of {SELECTIONS}, got {select!r}")
        if not 0 <= min_gain < MAX_SCORE:
            raise ValueError(f"min_gain must be in [0, {MAX_SCORE}), got {min_gain}")
        self.nima_model = nima_model
        self.iterations = int(iterations)
        self.learning_rate = float(learning_rate)
        self.optimizer = optimizer
        self.proxy_size = proxy_size
        self.initial_exposure = parse_initial_exposure(initial_exposure)
        self.select = select
        self.min_gain = float(min_gain)
        self._steps = _compiled_steps(nima_model)

    def _proxy(self, images):
        height, width = images.shape[1:3]
        scale = self.proxy_size / max(height, width)
        if scale >= 1:
            return images
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        return tf.image.resize(images, size, method="area")

    def _initial_raw(self, images):
        """The raw parameters the search starts from, and the initial exposures in EV."""
        batch = images.shape[0]
        if self.initial_exposure == "auto":
            exposures = auto_exposure(images)
        else:
            exposures = np.full(batch, self.initial_exposure, np.float64)
        raw = filters.initial_raw_parameters(batch)
        raw["exposure"] = filters.FILTERS_BY_NAME["exposure"].raw_from_natural(exposures)
        return {name: tf.constant(value) for name, value in raw.items()}, exposures

    def enhance(self, images, names=None):
        """Enhances a batch of same-size photos, float [batch, h, w, 3] in [0, 1] (or one
        (h, w, 3) photo, returned with a batch axis of 1). Returns a `PieaResult`.

        `names` (one per photo, e.g. file names) name the photos in the warnings logged;
        default "photo <index>". ValueError naming them if their sides (the proxy's with
        proxy_size) are below `nima.min_input_side` of the guide (32, VGG16: 224).
        """
        images = tf.convert_to_tensor(images, tf.float32)
        if images.shape.rank == 3:
            images = images[tf.newaxis]
        if images.shape.rank != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected RGB images [batch, h, w, 3], got shape {images.shape}")
        batch = images.shape[0]
        names = [f"photo {i}" for i in range(batch)] if names is None else list(names)
        if len(names) != batch:
            raise ValueError(f"{len(names)} names for {batch} photos")
        scored_images = images if self.proxy_size is None else self._proxy(images)
        _check_size(scored_images, self.nima_model, names, self.proxy_size)
        scored = filters.planar_logs(scored_images)
        steps = self._steps
        input_scores = steps.score(scored_images).numpy().astype(np.float64)
        _check_finite(input_scores, "of the input as given")

        raw, exposures = self._initial_raw(images)
        optimizer = None
        if self.optimizer is not None:
            optimizer = self.optimizer.__class__.from_config(self.optimizer.get_config())
            raw = {name: tf.Variable(value, name=name) for name, value in raw.items()}
        learning_rate = tf.constant(self.learning_rate, tf.float32)
        history, raw_history, all_scores = [], [], []
        start_norms = np.full(batch, np.nan)
        for iteration in range(self.iterations):
            raw_history.append(_numpy(raw))
            if optimizer is None:
                scores, natural, norms, raw = steps.plain_step(scored, raw, learning_rate)
            else:
                scores, gradients, natural = steps.scores_and_gradients(scored, raw)
                norms = gradient_norms(gradients)
                optimizer.apply_gradients([(gradients[name], raw[name]) for name in raw])
            _check_finite(scores.numpy(), f"after {iteration} updates")
            if iteration == 0:
                start_norms = norms.numpy().astype(np.float64)
            all_scores.append(scores.numpy())
            history.append(_numpy(natural))
        raw_history.append(_numpy(raw))
        final_image, scores, natural = steps.render_and_score(scored, raw)
        history.append(_numpy(natural))
        _check_finite(scores.numpy(), f"after {self.iterations} updates")
        all_scores.append(scores.numpy())
        all_scores = np.stack(all_scores, axis=1).astype(np.float64)

        selected, output_scores, selections, warnings = [], [], [], []
        for index in range(batch):
            choice = _select(self.select, all_scores[index], input_scores[index],
                             self.min_gain)
            selected.append(choice[0])
            output_scores.append(choice[1])
            selections.append(choice[2])
            warnings.append(self._warnings(all_scores[index], input_scores[index],
                                           start_norms[index], exposures[index], choice))
            for warning in warnings[-1]:
                logging.warning("PIEA, %s: %s", names[index], warning)
        return PieaResult(
            images=self._returned_images(images, raw_history, selected, final_image),
            scores=all_scores,
            parameters=history,
            input_scores=input_scores,
            selected_iterations=selected,
            output_scores=np.asarray(output_scores, np.float64),
            selections=selections,
            initial_exposures=np.asarray(exposures, np.float64),
            gradient_norms=start_norms,
            warnings=warnings,
            select=self.select,
        )

    def _returned_images(self, images, raw_history, selected, final_image):
        """The selected candidates: the input as given, or an iterate rendered at full size."""
        if self.proxy_size is None and all(t == self.iterations for t in selected):
            rendered = final_image.numpy()  # already the last iterate at full size
        else:
            picked = [self.iterations if t is None else t for t in selected]
            raw = {name: tf.constant(np.stack([raw_history[t][name][index]
                                               for index, t in enumerate(picked)]))
                   for name in raw_history[0]}
            rendered = self._steps.render(filters.planar_logs(images), raw).numpy()
        returned = np.clip(rendered, 0.0, 1.0)
        for index, t in enumerate(selected):
            if t is None:
                returned[index] = np.clip(images[index].numpy(), 0.0, 1.0)
        return returned

    def _warnings(self, scores, input_score, start_norm, exposure, choice):
        """This photo's warnings in words (module docstring)."""
        warnings = []
        if self.iterations >= 1 and np.ptp(scores) < SCORE_STUCK_TOLERANCE:
            warnings.append(
                f"the guide's score stayed at {scores[0]:.3f} over all {len(scores)} iterates "
                f"(input {input_score:.3f}): the guide is saturated and gives PIEA no "
                f"direction.")
        if self.iterations >= 1 and start_norm < GRADIENT_FLOOR:
            warnings.append(
                f"vanishing gradient: |dL/dpi| = {start_norm:.3g} at the start (below "
                f"{GRADIENT_FLOOR:g}), so the steps cannot move the photo (score "
                f"{scores[0]:.3f}, input {input_score:.3f}).")
        if choice[0] is not None and choice[1] < input_score:
            warnings.append(
                f"the returned iterate {choice[0]} scores {choice[1]:.3f}, lower than the input "
                f"({input_score:.3f}) (select='final', the paper's Algorithm 1).")
        if warnings and exposure > 0 and scores[0] < input_score:
            warnings[0] += (f" The {exposure:+.2f} EV start scored {scores[0]:.3f}, below the "
                            f"input's {input_score:.3f}: try initial_exposure='auto'.")
        return warnings


def _select(select, scores, input_score, min_gain=MIN_SCORE_GAIN):
    """(iteration or None for the input, its score, the reason in words) for one photo."""
    iterations = len(scores) - 1
    if select == "final":
        return (iterations, float(scores[-1]),
                f"iteration {iterations} of {iterations}, the final iterate (select='final', "
                f"the paper's Algorithm 1): NIMA score {scores[-1]:.3f} (input "
                f"{input_score:.3f})")
    best = int(np.argmax(scores))
    if scores[best] > input_score and scores[best] - input_score >= min_gain:
        return (best, float(scores[best]),
                f"iteration {best} of {iterations}: highest NIMA score {scores[best]:.3f} "
                f"(input {input_score:.3f})")
    if scores[best] > input_score:
        return (None, float(input_score),
                f"the input itself: the best iterate, iteration {best} of {iterations}, scored "
                f"{scores[best]:.3f}, only {scores[best] - input_score:+.3f} over the input's "
                f"{input_score:.3f} (less than min_gain {min_gain:g}: not worth an edit); the "
                f"photo is returned unchanged")
    return (None, float(input_score),
            f"the input itself: no iterate scored higher than the input ({input_score:.3f}; "
            f"the best, iteration {best} of {iterations}, scored {scores[best]:.3f}); the photo "
            f"is returned unchanged")


def _numpy(natural):
    return {name: np.array(value) for name, value in natural.items()}


def _check_size(scored_images, nima_model, names, proxy_size):
    """ValueError naming the photos if what is scored is smaller than the guide can score."""
    height, width = scored_images.shape[1:3]
    side = nima.min_input_side(nima_model)
    if min(height, width) < side:
        scored = "" if proxy_size is None else f" as scored (proxy_size={proxy_size})"
        raise ValueError(f"{', '.join(map(str, names))}: {width}x{height} pixels{scored} is "
                         f"below {side}x{side}, the smallest photo its NIMA guide can score; "
                         "PIEA cannot enhance it")


def _check_finite(scores, when):
    if not np.all(np.isfinite(scores)):
        raise FloatingPointError(f"PIEA: non-finite NIMA score {when} "
                                 f"({np.asarray(scores).tolist()}); try a smaller learning rate")


def enhance(images, nima_model, iterations=ITERATIONS, learning_rate=LEARNING_RATE,
            optimizer=None, proxy_size=None, initial_exposure=INITIAL_EXPOSURE, select="best",
            names=None, min_gain=MIN_SCORE_GAIN):
    """Algorithm 1 on a batch of same-size photos; see `PieaEnhancer` and the module docstring.

    Returns a `PieaResult`: the returned images, the input's NIMA score, the score of every
    photo at every iteration (iteration 0 included), which candidate was returned and why, the
    natural-unit parameters of every photo at every iteration, and any warnings.
    """
    return PieaEnhancer(nima_model, iterations, learning_rate, optimizer, proxy_size,
                        initial_exposure, select, min_gain).enhance(images, names)


def load_nima(nima_weights=None, backbone=PAPER_BACKBONE):
    """The NIMA model that guides PIEA, and a line saying which it is.

    `nima_weights` is a whole-NIMA weights file (`model.save_weights`, `train.nima`'s output)
    for `backbone`; None gives the demo NIMA (`nima.demo_model()`, a MobileNet trained on the
    embedded demo set; trained into a cache on first use; `backbone` is then unused), which is
    said in the returned line and logged, since it is a stand-in for a NIMA trained on AVA.
    """
    return nima.load_nima_model(nima_weights or nima.DEMO_WEIGHTS, backbone)
