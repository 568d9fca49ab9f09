"""``infbrush spectrum``: radially averaged power spectra of samples vs real images, lattice-frequency peaks."""
from __future__ import annotations

import argparse
import sys

HELP = "spectral check: power spectra of samples (each resolution) vs real images, energy at lattice frequencies"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from infbrush.cli.options import signature_defaults
    from infbrush.evaluate.spectrum import spectrum_check

    d = signature_defaults(spectrum_check)  # the library owns the defaults
    parser.add_argument("--store", required=True, help="images.h5: the real images (resized to each sample size)")
    parser.add_argument("--samples", required=True, action="append",
                        help="index.json written by `infbrush sample` (OUT/<R>/index.json); repeat per resolution")
    parser.add_argument("--out", required=True, help="spectrum.json")
    parser.add_argument("--plot", default=None, help="spectrum.png (radial spectra and their ratio)")
    parser.add_argument("--lattice-freqs", type=float, nargs="*", default=list(d["lattice_freqs"]),
                        help="frequencies to check, in cycles per image side (e.g. the model's sparse lattice and "
                             "grid cells per side: 64 32 for the demo preset; default: %(default)s)")
    parser.add_argument("--real-split", choices=("all", "train", "held_out"), default=d["real_split"],
                        help="which store rows are the real images (default: %(default)s)")
    parser.add_argument("--max-real", type=int, default=d["max_real"],
                        help="at most this many real images, drawn with --seed (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=d["seed"], help="default: %(default)s")
    parser.add_argument("--peak-factor", type=float, default=d["peak_factor"],
                        help="a lattice peak counts when its prominence exceeds this many times the real images' "
                             "(default: %(default)s)")
    parser.add_argument("--max-side", type=int, default=d["max_side"],
                        help="larger samples are analysed on their central window of this side (default: %(default)s)")


def main(args: argparse.Namespace) -> int:
    from infbrush.errors import InfbrushError
    from infbrush.evaluate.spectrum import plot_spectrum, spectrum_check
    from infbrush.io import write_json

    if any(f <= 0 for f in args.lattice_freqs):
        raise InfbrushError(f"--lattice-freqs must be positive, got {args.lattice_freqs}")
    if args.peak_factor < 1 or args.max_real < 1 or args.max_side < 8:
        raise InfbrushError(f"--peak-factor must be >= 1, --max-real >= 1, --max-side >= 8; got {args.peak_factor}, "
                            f"{args.max_real}, {args.max_side}")
    result = spectrum_check(args.store, args.samples, lattice_freqs=args.lattice_freqs, real_split=args.real_split,
                            max_real=args.max_real, seed=args.seed, peak_factor=args.peak_factor,
                            max_side=args.max_side)
    if args.plot:
        plot_spectrum(result, args.plot)
        result["plot"] = str(args.plot)
    write_json(args.out, result)
    peaks = ", ".join(f"{p['freq']:g} cycles at {p['resolution']}²" for p in result["peaks_above_real"]) or "none"
    print(f"spectrum: {len(result['resolutions'])} resolution(s) vs {result['real']['n_images']} real images; "
          f"lattice peaks above the real level: {peaks} -> {args.out}", file=sys.stderr)
    return 0
