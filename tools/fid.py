"""FID between two image folders (or a folder and a statistics file), like ``python -m pytorch_fid``.

    python tools/fid.py PATH_A PATH_B --inception pt_inception-2015-12-05-6726825d.pth
    python tools/fid.py FOLDER stats.npz --inception FILE          # .npz with mu, sigma
    python tools/fid.py --save-stats FOLDER out.npz --inception FILE

Defaults reproduce pytorch-fid's number for the same weights: images read with PIL as RGB
(files *.bmp/jpg/jpeg/pgm/png/ppm/tif/tiff/webp in the folder, sorted), ``x/255``, bilinear
resize to 299 (``align_corners=False``), ``2x − 1``, 2048-d pool features, ``np.cov``
(unbiased) statistics and pytorch-fid's Fréchet distance (ε = 1e-6 retry).
``--convention nvlabs`` uses NVlabs' normalisation ``(x − 128)/128`` and biased covariance
instead. Prints ``FID: <value>``. Images of different sizes in one folder are each resized to 299.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

# tools/ must not be on sys.path (tools/profile.py would shadow the stdlib's `profile`); the repo root is.
sys.path[:] = [str(pathlib.Path(__file__).resolve().parents[1])] + [
    p for p in sys.path if pathlib.Path(p or ".").resolve() != pathlib.Path(__file__).resolve().parent]

IMAGE_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")


def list_images(path: str) -> list[pathlib.Path]:
    """pytorch-fid's file list: ``sorted(glob('*.{ext}') for each extension)`` (not recursive)."""
    p = pathlib.Path(path)
    return sorted(f for ext in IMAGE_EXTENSIONS for f in p.glob(f"*.{ext}"))


_JITTED: dict = {}


def _jitted(detector):
    import jax
    key = (detector.name, detector.cache_key)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(detector.fn)
    return _JITTED[key]


def folder_statistics(path: str, detector, batch_size: int = 50, convention: str = "pytorch_fid",
                      progress: bool = True):
    """(mu [2048], sigma [2048, 2048]) of the images in folder ``path`` (float64)."""
    import jax
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    from gancomp_jax.metrics.stats_cache import FeatureStats

    files = list_images(path)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
    if len(files) < 2:
        raise ValueError(f"{path}: FID needs at least 2 images, found {len(files)}")
    fn = _jitted(detector)
    stats = FeatureStats(capture_mean_cov=True)
    for i in tqdm(range(0, len(files), batch_size), desc=os.path.basename(os.path.normpath(path)),
                  disable=not progress):
        batch = []
        for f in files[i:i + batch_size]:
            try:
                with Image.open(f) as img:
                    batch.append(np.asarray(img.convert("RGB"), np.uint8))
            except OSError as e:
                raise ValueError(f"cannot read image {f}: {e}") from None
        shapes = {b.shape for b in batch}
        if len(shapes) == 1:  # pad the last batch so one program serves every batch
            x = np.stack(batch)
            n = len(x)
            if n < batch_size:
                x = np.concatenate([x, np.zeros((batch_size - n, *x.shape[1:]), x.dtype)])
            stats.append(np.asarray(fn(detector.params, x))[:n])
        else:  # mixed sizes: one at a time (each is resized to 299 by the detector)
            for b in batch:
                stats.append(np.asarray(fn(detector.params, b[None])))
    return stats.get_mean_cov(ddof=1 if convention == "pytorch_fid" else 0)


def path_statistics(path: str, detector, batch_size: int, convention: str, progress: bool = True):
    import numpy as np
    if path.endswith(".npz"):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"statistics file {path} does not exist")
        with np.load(path) as f:
            if "mu" not in f.files or "sigma" not in f.files:
                raise ValueError(f"{path} must hold arrays 'mu' and 'sigma' (pytorch-fid's format), found {f.files}")
            return f["mu"][:], f["sigma"][:]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"invalid path: {path} (an image folder or a .npz statistics file)")
    return folder_statistics(path, detector, batch_size, convention, progress)


_DETECTORS: dict = {}


def _detector(path: str, convention: str):
    from gancomp_jax.metrics.detectors import inception_detector
    key = (os.path.abspath(path), convention)
    if key not in _DETECTORS:
        _DETECTORS[key] = inception_detector(path, convention, "pool")
    return _DETECTORS[key]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("path", nargs=2, help="image folders or .npz statistics files")
    parser.add_argument("--inception", required=True,
                        help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (or a converted directory)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--convention", choices=("pytorch_fid", "nvlabs"), default="pytorch_fid")
    parser.add_argument("--save-stats", action="store_true",
                        help="write the first path's statistics to the second path (.npz)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import numpy as np

    from gancomp_jax.metrics.fid import frechet_distance

    if not os.path.exists(args.inception):
        raise FileNotFoundError(f"Inception weights {args.inception} do not exist")
    if args.save_stats and os.path.exists(args.path[1]):
        raise FileExistsError(f"existing output file: {args.path[1]}")
    for p in args.path[:1 if args.save_stats else 2]:
        if not os.path.exists(p):
            raise FileNotFoundError(f"invalid path: {p}")
    detector = _detector(args.inception, args.convention)
    if args.save_stats:
        mu, sigma = path_statistics(args.path[0], detector, args.batch_size, args.convention, not args.no_progress)
        np.savez_compressed(args.path[1], mu=mu, sigma=sigma)
        print(f"saved statistics of {args.path[0]} to {args.path[1]}")
        return 0
    m1, s1 = path_statistics(args.path[0], detector, args.batch_size, args.convention, not args.no_progress)
    m2, s2 = path_statistics(args.path[1], detector, args.batch_size, args.convention, not args.no_progress)
    value = frechet_distance(m1, s1, m2, s2, convention=args.convention)
    print(f"FID: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
