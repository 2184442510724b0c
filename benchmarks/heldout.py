"""The held-out real-photo check of every enhancer (`tools.heldout`), as tables and pictures.

    python benchmarks/heldout.py --wespe=runs/wespe_demo/export --can=runs/can_demo/export \\
        --enhancegan=runs/enhancegan_demo/export --pienet=runs/pienet_demo/export --piea \\
        --output_dir=runs/heldout

For each enhancer given (an exported SavedModel through `tools.enhance`, or PIEA under the demo
NIMA or `--nima_weights`), on the held-out photos of `datasets.heldout` at full size: the
degraded table (PSNR/SSIM against the clean original, input and output), the clean table
(how far the output moves, colour cast, clipping, border and detail ratios, NIMA of input and
output), then every rule broken (`tools.heldout.failures`). Pictures go to `--output_dir`:
`<enhancer>_<photo>_degraded.png` (degraded | output | original) and `..._clean.png`.
PieNet (a demo export) is judged as each of the demo's held-out users would use it: the user's
vector from 20 of their demo photos, the target their retouch of each held-out photo
(`tools.heldout.pienet_new_user`): `<enhancer>_<photo>_retouch.png` (photo | output | retouch).
Exit status 1 if any rule is broken.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

import nima  # noqa: E402
from datasets import heldout as heldout_photos  # noqa: E402
from enhancers import piea  # noqa: E402
from tools import enhance, heldout, report  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("wespe", None, "WESPE export (version or base directory).")
flags.DEFINE_string("can", None, "CAN export (version or base directory).")
flags.DEFINE_string("enhancegan", None, "EnhanceGAN export (version or base directory); "
                    "judged within its crop box.")
flags.DEFINE_string("pienet", None, "PieNet demo export (version or base directory); judged "
                    "for each of --pienet_users against their retouches.")
flags.DEFINE_list("pienet_users", ["soft_bright_cool", "punchy_warm_dark"], "Held-out users of "
                  "the PieNet demo the export is personalised to.")
flags.DEFINE_integer("pienet_photos", 20, "A PieNet user's vector is the mean embedding of this "
                     "many of their demo photos.", lower_bound=1)
flags.DEFINE_bool("piea", False, "Check PIEA (under --nima_weights, default the demo NIMA).")
flags.DEFINE_string("nima_weights", None, "Whole-NIMA weights for the NIMA columns and PIEA's "
                    "guide (default: the demo NIMA).")
flags.DEFINE_enum("backbone", "inception_v2", list(nima.BACKBONES), "Backbone of "
                  "--nima_weights.")
flags.DEFINE_string("initial_exposure", "auto", "PIEA's start: EV or 'auto'.")
flags.DEFINE_list("photos", list(heldout_photos.PHOTOS), "Held-out photos to use.")
flags.DEFINE_string("output_dir", "runs/heldout", "Where the pictures go.")


def main(argv):
    del argv
    nima_model, description = piea.load_nima(FLAGS.nima_weights, FLAGS.backbone)
    photos = heldout_photos.load_photos(FLAGS.photos)
    enhancers = []
    for name, path, degradation in (("WESPE", FLAGS.wespe, "wespe"), ("CAN", FLAGS.can, "can")):
        if path:
            enhancers.append((name, enhance.load_saved_model_enhancer(path), degradation, False))
    if FLAGS.enhancegan:
        loaded = enhance.load_saved_model_enhancer(FLAGS.enhancegan)
        enhancers.append(("EnhanceGAN", loaded.predict, "enhancegan", False))
    targets = {}
    for user in FLAGS.pienet_users if FLAGS.pienet else ():
        fn, target, _ = heldout.pienet_new_user(FLAGS.pienet, user, FLAGS.pienet_photos)
        name = f"PieNet, new user {user}"
        enhancers.append((name, fn, f"{user}'s retouch", False))
        targets[name] = target
    if FLAGS.piea:
        piea_fn = enhance.piea_enhance_fn(nima_model, description,
                                          initial_exposure=FLAGS.initial_exposure)
        enhancers.append(("PIEA", lambda image: piea_fn(image).image, "piea", True))
    if not enhancers:
        raise app.UsageError("Give at least one of --wespe, --can, --enhancegan, --pienet, "
                             "--piea.")
    results = [heldout.check_enhancer(name, fn, photos, degradation, nima_model=nima_model,
                                      steered=steered, picture_dir=FLAGS.output_dir,
                                      target=targets.get(name))
               for name, fn, degradation, steered in enhancers]
    for kind in ("degraded", "clean"):
        print(report.format_table(heldout.heldout_report(results, kind)))
        print()
    broken = [failure for result in results for failure in heldout.failures(result)]
    print(f"NIMA: {description}. Pictures: {FLAGS.output_dir}")
    print("Held-out check: " + ("passed" if not broken else f"{len(broken)} rules broken:"))
    for failure in broken:
        print("  " + failure)
    return 1 if broken else 0


if __name__ == "__main__":
    app.run(main)
