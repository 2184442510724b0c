"""An independent NumPy forward pass of torchvision's resnet18 on its own state dict (NCHW
activations, OIHW weights, torch's padding), to check `enhancers.resnet18` against."""
import numpy as np

WIDTHS = (64, 128, 256, 512)


def random_state_dict(seed=0):
    """A torchvision resnet18 state dict of random float32 arrays (He-scaled convs, BN with
    non-trivial statistics), fc and num_batches_tracked included as torch saves them."""
    rng = np.random.default_rng(seed)
    state = {}

    def conv(key, cout, cin, k):
        std = np.sqrt(2.0 / (cin * k * k))
        state[f"{key}.weight"] = (rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32)

    def bn(key, c):
        state[f"{key}.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[f"{key}.bias"] = rng.normal(0.0, 0.1, c).astype(np.float32)
        state[f"{key}.running_mean"] = rng.normal(0.0, 0.1, c).astype(np.float32)
        state[f"{key}.running_var"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
        state[f"{key}.num_batches_tracked"] = np.array(7, np.int64)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    cin = 64
    for layer, width in enumerate(WIDTHS, start=1):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            conv(f"{prefix}.conv1", width, cin if block == 0 else width, 3)
            bn(f"{prefix}.bn1", width)
            conv(f"{prefix}.conv2", width, width, 3)
            bn(f"{prefix}.bn2", width)
            if block == 0 and layer > 1:
                conv(f"{prefix}.downsample.0", width, cin, 1)
                bn(f"{prefix}.downsample.1", width)
        cin = width
    state["fc.weight"] = rng.standard_normal((1000, 512)).astype(np.float32)
    state["fc.bias"] = rng.standard_normal(1000).astype(np.float32)
    return state


def conv2d(x, weight, stride, pad):
    """torch.nn.functional.conv2d (no bias) by explicit im2col: x (n, c, h, w), weight OIHW,
    zero padding `pad` on every side."""
    n, c, h, w = x.shape
    cout, cin, kh, kw = weight.shape
    assert cin == c
    x = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    out_h = (h + 2 * pad - kh) // stride + 1
    out_w = (w + 2 * pad - kw) // stride + 1
    columns = np.empty((n, c, kh, kw, out_h, out_w), x.dtype)
    for i in range(kh):
        for j in range(kw):
            columns[:, :, i, j] = x[:, :, i:i + stride * (out_h - 1) + 1:stride,
                                    j:j + stride * (out_w - 1) + 1:stride]
    columns = columns.reshape(n, c * kh * kw, out_h * out_w)
    out = np.einsum("ok,nkp->nop", weight.reshape(cout, -1), columns)
    return out.reshape(n, cout, out_h, out_w)


def batch_norm(x, state, key, epsilon=1e-5):
    """BatchNorm2d in eval mode."""
    shape = (1, -1, 1, 1)
    scale = state[f"{key}.weight"] / np.sqrt(state[f"{key}.running_var"] + epsilon)
    return ((x - state[f"{key}.running_mean"].reshape(shape)) * scale.reshape(shape)
            + state[f"{key}.bias"].reshape(shape))


def max_pool(x, size=3, stride=2, pad=1):
    """MaxPool2d(3, 2, padding=1): torch pads with -inf."""
    n, c, h, w = x.shape
    x = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], constant_values=-np.inf)
    out_h = (h + 2 * pad - size) // stride + 1
    out_w = (w + 2 * pad - size) // stride + 1
    out = np.full((n, c, out_h, out_w), -np.inf)
    for i in range(size):
        for j in range(size):
            out = np.maximum(out, x[:, :, i:i + stride * (out_h - 1) + 1:stride,
                                   j:j + stride * (out_w - 1) + 1:stride])
    return out


def relu(x):
    return np.maximum(x, 0.0)


def resnet18_taps(images, state):
    """images (n, h, w, 3) already normalised -> {"conv1", "block2", "block4", "block6": NHWC,
    "pool": (n, 512)}, in float64."""
    state = {key: np.asarray(value, np.float64) for key, value in state.items()}
    x = np.transpose(np.asarray(images, np.float64), (0, 3, 1, 2))
    x = relu(batch_norm(conv2d(x, state["conv1.weight"], 2, 3), state, "bn1"))
    taps = {"conv1": x}
    x = max_pool(x)
    count = 0
    for layer in range(1, 5):
        for block in range(2):
            prefix = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            y = relu(batch_norm(conv2d(x, state[f"{prefix}.conv1.weight"], stride, 1), state,
                                f"{prefix}.bn1"))
            y = batch_norm(conv2d(y, state[f"{prefix}.conv2.weight"], 1, 1), state,
                           f"{prefix}.bn2")
            if f"{prefix}.downsample.0.weight" in state:
                x = batch_norm(conv2d(x, state[f"{prefix}.downsample.0.weight"], stride, 0),
                               state, f"{prefix}.downsample.1")
            x = relu(y + x)
            count += 1
            if count in (2, 4, 6):
                taps[f"block{count}"] = x
    taps = {key: np.transpose(value, (0, 2, 3, 1)) for key, value in taps.items()}
    taps["pool"] = x.mean(axis=(2, 3))
    return taps
