"""Image decoding shared by every pipeline and by the serving signatures.

Every module passes images around as float32 NHWC RGB in [0, 1] (DESIGN.md section 4).
"""
import tensorflow as tf


def decode_image_tensor(image_bytes):
    """Decodes one encoded JPEG/PNG/BMP/GIF (scalar tf.string) to float32 RGB in [0, 1], in graph.

    Grayscale becomes RGB, alpha is dropped and 16-bit PNGs are scaled, not truncated, because
    `decode_image(..., dtype=tf.float32)` converts from the file's own bit depth.
    """
    image = tf.io.decode_image(image_bytes, channels=3, dtype=tf.float32, expand_animations=False)
    image.set_shape([None, None, 3])
    return image
