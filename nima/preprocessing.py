"""Input preprocessing layers that live inside each backbone (DESIGN.md section 4).

Every module hands images around as float32 RGB in [0, 1]; each backbone converts them to the
range its ImageNet weights were trained on, inside the model, so that training, evaluation, the
perceptual losses and the exported SavedModel can never disagree on it.
"""
import keras
from keras import ops

# Keras VGG16 ("caffe" mode): BGR channel order, 0-255 range, ImageNet mean subtracted.
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="nima")
class SymmetricScale(keras.layers.Layer):
    """[0, 1] -> [-1, 1], the "tf" mode of MobileNet and TF-Slim's Inception preprocessing."""

    def call(self, images):
        return images * 2.0 - 1.0


@keras.saving.register_keras_serializable(package="nima")
class CaffePreprocess(keras.layers.Layer):
    """[0, 1] RGB -> 0-255 BGR minus the ImageNet mean, as the Keras VGG16 weights expect."""

    def call(self, images):
        bgr = ops.flip(images, axis=-1) * 255.0
        return bgr - ops.convert_to_tensor(_CAFFE_BGR_MEAN, dtype=bgr.dtype)
