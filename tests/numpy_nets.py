"""Independent NumPy forward passes of small conv nets, to check Keras architectures against."""
import numpy as np


def conv2d_same(x, kernel, bias, stride=1):
    """TensorFlow's SAME convolution (extra padding at the bottom/right), NHWC, HWIO kernel."""
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    out_h, out_w = -(-h // stride), -(-w // stride)
    pad_h = max((out_h - 1) * stride + k - h, 0)
    pad_w = max((out_w - 1) * stride + k - w, 0)
    x = np.pad(x, [(0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2),
                   (0, 0)])
    out = np.zeros((n, out_h, out_w, kernel.shape[-1]))
    for i in range(k):
        for j in range(k):
            patch = x[:, i:i + (out_h - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride]
            out += np.einsum("nhwc,cd->nhwd", patch, kernel[i, j])
    return out + bias


def instance_norm(x, gamma, beta, epsilon=1e-3):
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    return (x - mean) / np.sqrt(var + epsilon) * gamma + beta


def relu(x):
    return np.maximum(x, 0.0)


def leaky_relu(x, slope=0.2):
    return np.where(x > 0, x, slope * x)
