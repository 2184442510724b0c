"""EnhanceGAN's losses in the paper's own sign: the critic's f_W is LOWER for better photos.

Deng, Loy & Tang, "Aesthetic-Driven Image Enhancement by Adversarial Learning" (ACM MM 2018),
sections 3.1-3.3, and the authors' Torch7 release (`main.lua`, `MSECriterionDS.lua`). Every
loss takes critic scores f_W or features (so it stays pure: the networks run in the train step)
and returns per-example float32 values, shape (batch,); a score map or feature map is averaged
(or summed) per example over its non-batch axes. Reduction over the batch happens once, in the
train step.

- Equation 2, `wasserstein_estimate(data, generated)` = f_W(I_data) - f_W(I_generated).
- Equation 10, `enhancegan_critic_loss(good, output)` = f_W(I_good) - f_W(I_output), which the
  critic minimises (good photos pushed low, enhanced ones high): equation 2 with the good photos
  as the data and the enhanced bad photos as the generated side.
- Equation 7, `enhancegan_generator_loss(output)` = f_W(I_output), which G minimises.
- Equation 8, `feature_regulariser(output_features, input_features)`: the squared distance
  between VGG-16 fc7 features of the enhanced image and of its input. reduction="mean" (the
  default) is the release's `nn.MSECriterion` (the mean over the 4096 features); "sum" is
  the paper's ||.||_2^2.
- Equation 9, `hinge_regulariser(output, input)`: (f_W(I_output) - f_W(I))^2 where the critic
  rates the output worse than its input (f_W(I_output) >= f_W(I)), else 0 (side="paper", the
  default). The release's `MSECriterionDS` keeps the other half -- its gradient passes only
  where f_W(I_output) < f_W(I), i.e. it pulls an output rated better than its input back
  towards the input's score, although its comment says it wants no gradient there:
  side="release" computes that half, (f_W(I_output) - f_W(I))^2 where f_W(I_output) < f_W(I).

In `losses.adversarial`'s TF-GAN convention (higher is better, f = -f_W) the same numbers are
`enhancegan_generator_loss(s) == wasserstein_generator_loss(-s)` and
`enhancegan_critic_loss(g, o) == wasserstein_discriminator_loss(-g, -o)`.

Balancing the generator's terms (the release's `fGx`; the paper writes a weighted sum
"balanced in their scales", `weighted_generator_loss`): the gradient of each term (adversarial,
feature, hinge) with respect to the generated image is scaled down to norm <= 1 where it is
larger (`balance_term_gradients`: the release divides by the norm of the whole batch's
gradient, per_example=False; per_example=True normalises each image's gradient, which does not
depend on how a batch is split over replicas), the scaled gradients are summed and
back-propagated through G, and the generator's parameter gradient, accumulated over the 8
sub-batches, is clipped to global norm 100 (`clip_parameter_gradients`).
"""
import tensorflow as tf
from keras import ops

from losses.reduction import per_example_mean

FEATURE_REDUCTIONS = ("mean", "sum")
HINGE_SIDES = ("paper", "release")
TERM_GRADIENT_NORM = 1.0
PARAMETER_GRADIENT_NORM = 100.0


def wasserstein_estimate(data_f_w, generated_f_w):
    """Equation 2 per example: f_W(I_data) - f_W(I_generated)."""
    return per_example_mean(data_f_w) - per_example_mean(generated_f_w)


def enhancegan_critic_loss(good_f_w, output_f_w):
    """Equation 10 per example: f_W(I_good) - f_W(I_output), minimised by the critic."""
    return wasserstein_estimate(good_f_w, output_f_w)


def enhancegan_generator_loss(output_f_w):
    """Equation 7 per example: f_W(I_output), minimised by the generator."""
    return per_example_mean(output_f_w)


def feature_regulariser(output_features, input_features, reduction="mean"):
    """Equation 8 per example: the squared distance between the enhanced image's features and
    its input's (VGG-16 fc7 in the paper), averaged ("mean", the release's) or summed ("sum",
    the paper's) over the features."""
    difference = ops.square(ops.cast(output_features, "float32")
                            - ops.cast(input_features, "float32"))
    if reduction == "mean":
        return per_example_mean(difference)
    if reduction == "sum":
        return ops.sum(ops.reshape(difference, (ops.shape(difference)[0], -1)), axis=-1)
    raise ValueError(f"reduction must be one of {FEATURE_REDUCTIONS}, got {reduction!r}")


def hinge_regulariser(output_f_w, input_f_w, side="paper"):
    """Equation 9 per example (module docstring): (f_W(I_output) - f_W(I))^2 where the output is
    rated worse than its input (side="paper") or better (side="release"), else 0. A NaN score
    gives NaN (the mask multiplies, it never selects)."""
    output_f_w = per_example_mean(output_f_w)
    input_f_w = per_example_mean(input_f_w)
    if side == "paper":
        penalised = output_f_w >= input_f_w
    elif side == "release":
        penalised = output_f_w < input_f_w
    else:
        raise ValueError(f"side must be one of {HINGE_SIDES}, got {side!r}")
    return ops.square(output_f_w - input_f_w) * ops.cast(penalised, "float32")


def weighted_generator_loss(adversarial, feature, hinge, weights=(1.0, 1.0, 1.0)):
    """The paper's generator loss, a weighted sum of the per-example terms (section 3.2.4)."""
    terms = (adversarial, feature, hinge)
    return sum(weight * ops.cast(term, "float32") for weight, term in zip(weights, terms))


def normalise_gradient(gradient, max_norm=TERM_GRADIENT_NORM, per_example=False):
    """`gradient` scaled to norm `max_norm` where its norm is larger (the release: `if norm >= 1
    then g / norm`): one norm over the whole tensor, or one per example (`per_example`). NaN
    stays NaN."""
    gradient = tf.convert_to_tensor(gradient, tf.float32)
    if per_example:
        axes = list(range(1, gradient.shape.rank))
        norm = tf.sqrt(tf.reduce_sum(tf.square(gradient), axis=axes, keepdims=True))
    else:
        norm = tf.norm(gradient)
    safe_norm = tf.where(norm > max_norm, norm, tf.ones_like(norm))
    return gradient * tf.where(norm > max_norm, max_norm / safe_norm, tf.ones_like(norm))


def balance_term_gradients(term_gradients, max_norm=TERM_GRADIENT_NORM, per_example=False):
    """The release's balancing of the generator's terms: each term's gradient with respect to
    the generated image (a list of tensors of the image's shape) normalised to norm <= max_norm
    by `normalise_gradient`, then summed; back-propagate the sum through G with
    `tape.gradient(images, variables, output_gradients=...)`."""
    if not term_gradients:
        raise ValueError("no term gradients to balance")
    return tf.add_n([normalise_gradient(gradient, max_norm, per_example)
                     for gradient in term_gradients])


def clip_parameter_gradients(gradients, max_norm=PARAMETER_GRADIENT_NORM):
    """The release's last step: the generator's parameter gradients (a list, None allowed)
    scaled to global norm `max_norm` where theirs is larger. Returns (clipped, global norm)."""
    return tf.clip_by_global_norm(gradients, max_norm)
