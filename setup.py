"""Aesthetics-guided photo enhancement: NIMA, CAN, PIEA, EnhanceGAN, PieNet, WESPE on Keras 3."""
from setuptools import setup

setup(
    name="aesthetic-enhance",
    version="0.1.0",
    description="NIMA aesthetic models as perceptual losses and the enhancers built on them "
    "(TensorFlow 2 / Keras 3).",
    python_requires=">=3.10",
    packages=["nima", "enhancers", "losses", "datasets", "train", "tools"],
    install_requires=[
        # CPU build by default; GPU users install `tensorflow[and-cuda]==2.21.*` (see README).
        "tensorflow-cpu==2.21.*; platform_machine == 'x86_64'",
        "tensorflow==2.21.*; platform_machine != 'x86_64'",
        "keras>=3.10,<4",
        "numpy>=1.26",
        "pillow>=10",
        "absl-py>=2.1",
        "tensorboard>=2.19",  # tf.summary needs it; tensorflow 2.21 no longer pulls it in
        "h5py>=3.10",
        "scikit-image>=0.22",
        "scipy>=1.11",
        "matplotlib>=3.8",  # evaluation figures (tools.figures), Agg canvas only; a held-out photo
        "scikit-learn>=1.3",  # ships two held-out photos (datasets.heldout); nothing else used
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3", "tf-slim==1.1.0"],
    },
)
