"""The EMD loss (NIMA paper equation 2) as a loss: it lives in `nima.emd`, beside the model whose
training and evaluation define it, so that `nima` needs nothing from `losses`."""
from nima.emd import emd_loss

__all__ = ["emd_loss"]
