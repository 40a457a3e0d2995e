"""FID between two image folders (or a folder and a statistics file), like ``python -m pytorch_fid``.

    python tools/fid.py PATH_A PATH_B --inception pt_inception-2015-12-05-6726825d.pth
    python tools/fid.py FOLDER stats.npz --inception FILE          # .npz with mu, sigma
    python tools/fid.py --save-stats FOLDER out.npz --inception FILE

Defaults reproduce pytorch-fid's number for the same weights: images read with PIL as RGB
(files *.bmp/jpg/jpeg/pgm/png/ppm/tif/tiff/webp in the folder, sorted), ``x/255``, bilinear
resize to 299 (``align_corners=False``), ``2x − 1``, 2048-d pool features, ``np.cov``
(unbiased) statistics and pytorch-fid's Fréchet distance (ε = 1e-6 retry).
``--convention nvlabs`` uses NVlabs' normalisation ``(x − 128)/128`` and biased covariance
instead. Prints ``FID: <value>``. Images of different sizes in one folder are each resized to 299
(bilinear, ``align_corners=False``, as pytorch-fid; consecutive images of one size are batched).

Odd inputs are refused with one ``error:`` line (exit 2): only regular files are read (a FIFO
named ``f.png`` is refused by name); image dimensions are checked from the header before
decoding (``--max-pixels``, default 2^25); ``--batch-size`` is 1..4096 and at most 64 MiB of
pixels go to the network at once; a statistics ``.npz`` must hold ``mu [2048]`` and
``sigma [2048, 2048]`` float arrays (checked from the ``.npy`` headers before reading, with
decompression bounded by those sizes) with finite values.
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
#: Default of --max-pixels: 2^25 (33.5 million, an 8K UHD frame fits); larger images are refused
#: from their header, before decoding.
DEFAULT_MAX_PIXELS = 1 << 25
MAX_BATCH_SIZE = 4096
#: Decoded uint8 pixels handed to the network at once (a batch of large images is split).
MAX_BATCH_BYTES = 64 << 20
FEATURE_DIM = 2048  # Inception pool3


def list_images(path: str) -> list[pathlib.Path]:
    """pytorch-fid's file list: ``sorted(glob('*.{ext}') for each extension)`` (not recursive).

    Only regular files (or links to them) are taken: a FIFO, socket, device or folder with an
    image name is refused by name (ValueError), never opened.
    """
    from gancomp_jax.io.safe_files import require_regular_file

    p = pathlib.Path(path)
    files = sorted(f for ext in IMAGE_EXTENSIONS for f in p.glob(f"*.{ext}"))
    for f in files:
        require_regular_file(f, "image")
    return files


def image_size(path: pathlib.Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(width, height)`` from the image header (nothing decoded), checked against ``max_pixels``."""
    return read_image(path, max_pixels, decode=False)


def read_image(path: pathlib.Path, max_pixels: int = DEFAULT_MAX_PIXELS, decode: bool = True):
    """``uint8 [H, W, 3]`` of an image file, its dimensions checked against ``max_pixels`` from the
    header before anything is decoded (PIL's own decompression-bomb warning is not used)."""
    import warnings

    import numpy as np
    from PIL import Image

    from gancomp_jax.io.safe_files import open_regular

    with open_regular(path, "image") as f:
        limit = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = None  # we check the size ourselves, with our own option
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as img:
                    width, height = img.size
                    if width * height > max_pixels:
                        raise ValueError(f"image {path} is {width}x{height} ({width * height:,} pixels), more than "
                                         f"--max-pixels {max_pixels:,}; raise it to read such images")
                    if width < 1 or height < 1:
                        raise ValueError(f"image {path} is {width}x{height} pixels")
                    if not decode:
                        return width, height
                    return np.asarray(img.convert("RGB"), np.uint8)
        except ValueError as e:
            if str(e).startswith("image "):
                raise
            raise ValueError(f"cannot read image {path}: {e}") from None
        except Exception as e:  # PIL raises OSError, SyntaxError, struct.error, EOFError ... on bad files
            raise ValueError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = limit


_JITTED: dict = {}


def _jitted(detector):
    import jax
    key = (detector.name, detector.cache_key)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(detector.fn)
    return _JITTED[key]


def folder_statistics(path: str, detector, batch_size: int = 50, convention: str = "pytorch_fid",
                      progress: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS):
    """(mu [2048], sigma [2048, 2048]) of the images in folder ``path`` (float64).

    Images are decoded one batch at a time; consecutive images of one size go to the network
    together, at most ``MAX_BATCH_BYTES`` of pixels at once; an image of another size is run
    alone (each is resized to 299 by the detector, bilinear, as pytorch-fid).
    """
    import numpy as np
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
        batch = [read_image(f, max_pixels) for f in files[i:i + batch_size]]
        shapes = {b.shape for b in batch}
        chunk = max(1, min(batch_size, MAX_BATCH_BYTES // batch[0].nbytes))
        if len(shapes) == 1:  # pad the last chunk so one program serves every chunk
            for j in range(0, len(batch), chunk):
                x = np.stack(batch[j:j + chunk])
                n = len(x)
                if n < chunk:
                    x = np.concatenate([x, np.zeros((chunk - n, *x.shape[1:]), x.dtype)])
                stats.append(np.asarray(fn(detector.params, x))[:n])
        else:  # mixed sizes: one at a time (each is resized to 299 by the detector)
            for b in batch:
                stats.append(np.asarray(fn(detector.params, b[None])))
        del batch
    return stats.get_mean_cov(ddof=1 if convention == "pytorch_fid" else 0)


def read_statistics(path: str):
    """``(mu [2048], sigma [2048, 2048])`` float64 from a pytorch-fid statistics ``.npz``.

    Shapes and dtypes are checked from the ``.npy`` headers before any data is read or
    decompressed (at most the 2048 x 2048 float64 these sizes imply), then finiteness.
    """
    import numpy as np

    from gancomp_jax.io.safe_files import check_finite, read_npz

    want = {"mu": (FEATURE_DIM,), "sigma": (FEATURE_DIM, FEATURE_DIM)}

    def check(name, header):
        if name not in want:
            return False
        if header.dtype.kind != "f" or header.dtype.itemsize > 8:
            raise ValueError(f"statistics file {path}: {name!r} has dtype {header.dtype}, expected float32 or float64")
        if header.shape != want[name]:
            raise ValueError(f"statistics file {path}: {name!r} has shape {header.shape}, expected {want[name]} "
                             f"(Inception pool3 features)")
        return True

    arrays = read_npz(path, check, "statistics file", max_bytes=(FEATURE_DIM + FEATURE_DIM ** 2) * 8)
    missing = [k for k in want if k not in arrays]
    if missing:
        raise ValueError(f"statistics file {path} must hold arrays 'mu' and 'sigma' (pytorch-fid's format); "
                         f"{missing[0]!r} is missing")
    check_finite(arrays, f"statistics file {path}")
    return arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64)


def check_input(path: str, max_pixels: int = DEFAULT_MAX_PIXELS):
    """Before any network is loaded: ``(mu, sigma)`` of a statistics ``.npz``, or None for an image
    folder whose images were all found to be regular files with headers within ``max_pixels``."""
    if path.endswith(".npz"):
        if not os.path.exists(path):
            raise FileNotFoundError(f"statistics file {path} does not exist")
        return read_statistics(path)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"invalid path: {path} (an image folder or a .npz statistics file)")
    for f in list_images(path):
        image_size(f, max_pixels)
    return None


def path_statistics(path: str, detector, batch_size: int, convention: str, progress: bool = True,
                    max_pixels: int = DEFAULT_MAX_PIXELS):
    """``(mu, sigma)`` of a statistics ``.npz`` or an image folder (see :func:`folder_statistics`)."""
    stats = check_input(path, max_pixels)
    return stats if stats is not None else folder_statistics(path, detector, batch_size, convention, progress,
                                                             max_pixels)


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
    parser.add_argument("--batch-size", type=int, default=50, help=f"images per batch (1..{MAX_BATCH_SIZE})")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="largest image (width x height) read; larger ones are refused from their header")
    parser.add_argument("--convention", choices=("pytorch_fid", "nvlabs"), default="pytorch_fid")
    parser.add_argument("--save-stats", action="store_true",
                        help="write the first path's statistics to the second path (.npz)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        if not 1 <= args.batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"--batch-size {args.batch_size} must be in 1..{MAX_BATCH_SIZE}")
        if args.max_pixels < 1:
            raise ValueError(f"--max-pixels {args.max_pixels} must be positive")
        return _run(args)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def _run(args) -> int:
    import numpy as np

    from gancomp_jax.metrics.fid import frechet_distance

    if not os.path.exists(args.inception):
        raise FileNotFoundError(f"Inception weights {args.inception} do not exist")
    if args.save_stats:  # the final name (numpy adds .npz), never through a link, never over a file
        from gancomp_jax.utils.atomic_dir import check_output_file

        if not args.path[1].endswith(".npz"):
            args.path[1] += ".npz"
        check_output_file(args.path[1], overwrite=False, option="")
    for p in args.path[:1 if args.save_stats else 2]:
        if not os.path.exists(p):
            raise FileNotFoundError(f"invalid path: {p}")
    # Inputs first (statistics files read and checked, every image header checked), then the network.
    ready = {p: check_input(p, args.max_pixels) for p in args.path[:1 if args.save_stats else 2]}
    detector = _detector(args.inception, args.convention) if any(v is None for v in ready.values()) else None

    def path_statistics(path, *rest):
        return ready[path] if ready[path] is not None else folder_statistics(path, *rest)

    if args.save_stats:
        mu, sigma = path_statistics(args.path[0], detector, args.batch_size, args.convention, not args.no_progress,
                                     args.max_pixels)
        import io

        from gancomp_jax.utils.atomic_dir import replace_file

        check_output_file(args.path[1], overwrite=False, option="")  # again, just before writing
        buf = io.BytesIO()
        np.savez_compressed(buf, mu=mu, sigma=sigma)
        replace_file(args.path[1], buf.getvalue())
        print(f"saved statistics of {args.path[0]} to {args.path[1]}")
        return 0
    m1, s1 = path_statistics(args.path[0], detector, args.batch_size, args.convention, not args.no_progress,
                                     args.max_pixels)
    m2, s2 = path_statistics(args.path[1], detector, args.batch_size, args.convention, not args.no_progress,
                                     args.max_pixels)
    value = frechet_distance(m1, s1, m2, s2, convention=args.convention)
    print(f"FID: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
