"""Pure loss functions returning per-example values; reduction happens once, in the train step."""
from losses.emd import emd_loss
