"""How well `sgfast paint` paints real photographs and the synthetic birds: PSNR and SSIM of each
method's painting against the image at the painting's output size (long side --long-side, the
image's shape), the gain over a flat fill with the image's mean colour, and the wall time.

    python benchmarks/paint_photos.py [--photos astronaut coffee ...] [--birds 4] \\
        [--methods flat agent divide4 optimize exact exact-agent] [--strokes 250 1000 4000] \\
        [--long-side 512] [--preset fast|balanced|quality] [--threads 2] [--out out/paint_photos] \\
        [--batch-images 8]

Photos come bundled with scikit-image (`skimage.data.NAME`) or scikit-learn (`china`, `flower`,
load_sample_images); no download. Birds: the first N images of sgfast's bundled sample birds.
Methods: flat (the mean colour), agent (`--method agent`: the shipped sg agent's 64 px square, as
`sgfast paint` painted before), divide4 (`--method agent --divide 4`), optimize (`--method
optimize`, its default 100 strokes at 64 px), exact (`--method exact --init none`) and exact-agent (`--init agent`) at each of
--strokes. A painting smaller than the output (agent, divide4, optimize) is resized to it (bicubic)
before it is compared. --batch-images N also times N same-shape images painted one at a time and
together (images/s). Prints markdown tables; writes image | painting PNGs under --out.

Needs scikit-image (`pip install scikit-image`; not a dependency of sgfast) and the compiled ops.
"""
import argparse
import glob
import math
import os
import time

import numpy as np
import torch

SKLEARN = {"china": "china.jpg", "flower": "flower.jpg"}
METHODS = ("flat", "agent", "divide4", "optimize", "exact", "exact-agent")


def load_photo(name):
    """uint8 [H, W, 3] of a bundled photo (grey ones repeated to 3 channels)."""
    if name in SKLEARN:
        from sklearn.datasets import load_sample_image

        img = load_sample_image(SKLEARN[name])
    else:
        import skimage.data

        img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def bird_images(n):
    from sgfast.resources import bundled_asset

    paths = sorted(glob.glob(os.path.join(bundled_asset("samples", "birds"), "images", "*", "*")))[:n]
    import cv2

    return [(os.path.splitext(os.path.basename(p))[0], cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB)) for p in paths]


def scores(reference_u8, painting_u8):
    from skimage.metrics import structural_similarity

    a, b = reference_u8.astype(np.float64) / 255, painting_u8.astype(np.float64) / 255
    mse = float(((a - b) ** 2).mean())
    psnr = 10 * math.log10(1 / max(mse, 1e-12))
    return psnr, float(structural_similarity(reference_u8, painting_u8, channel_axis=2))


def paint_one(method, image_u8, strokes, long_side, threads, preset=None):
    """(painting uint8 [h, w, 3] at the output shape, seconds)."""
    import cv2

    from sgfast.data.tensor_images import to_u8_hwc
    from sgfast.paint import paint
    from sgfast.paint.rerender import long_side_shape

    h, w = long_side_shape(*image_u8.shape[:2], long_side)
    ref = cv2.resize(image_u8, (w, h), interpolation=cv2.INTER_AREA)
    start = time.perf_counter()
    if method == "flat":
        out = np.broadcast_to(ref.reshape(-1, 3).mean(0).round().astype(np.uint8), ref.shape).copy()
    else:
        kw = {"frames": "none"}
        if method == "agent":
            kw.update(method="agent")
        elif method == "divide4":
            kw.update(method="agent", divide=4)
        elif method == "optimize":
            kw.update(method="optimize")  # its default budget (100 strokes, 200 iterations at 64 px)
        else:
            kw.update(method="exact", strokes=strokes, size=long_side, preset=preset,
                      init="agent" if method == "exact-agent" else "none")
        r = paint([image_u8], **kw)[0]
        if r.error:
            raise RuntimeError(r.error)
        out = to_u8_hwc(r.canvas)
        if out.shape[:2] != (h, w):
            out = cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)
    return ref, out, time.perf_counter() - start


def batch_rate(images, strokes, long_side, batch_sizes):
    """Images/s of `images` (same shape) painted by --method exact with each batch size."""
    from sgfast.paint import paint

    rates = {}
    for bs in batch_sizes:
        start = time.perf_counter()
        paint(images, method="exact", strokes=strokes, size=long_side, preset="fast", frames="none", batch_size=bs)
        rates[bs] = len(images) / (time.perf_counter() - start)
    return rates


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", nargs="*", default=["astronaut", "coffee", "chelsea", "rocket", "coins",
                                                     "hubble_deep_field", "china", "flower"])
    ap.add_argument("--birds", type=int, default=4, help="sample birds painted too (default 4)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--strokes", nargs="+", type=int, default=[1000],
                    help="strokes of exact and exact-agent (default 1000)")
    ap.add_argument("--long-side", type=int, default=512)
    ap.add_argument("--preset", default=None, choices=("fast", "balanced", "quality"),
                    help="--method exact's preset (default: the painter's default)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/paint_photos")
    ap.add_argument("--batch-images", type=int, default=0, help="also time N 256x256 crops painted alone / together")
    args = ap.parse_args()
    try:
        import skimage.metrics  # noqa: F401
    except ImportError:
        raise SystemExit("paint_photos.py needs scikit-image: pip install scikit-image") from None
    import cv2

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    images = [(n, load_photo(n), "photo") for n in args.photos]
    images += [(n, img, "bird") for n, img in bird_images(args.birds)]
    print("| image | kind | output | method | strokes | PSNR | SSIM | gain over flat | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, img, kind in images:
        flat_psnr = None
        for method in args.methods:
            counts = args.strokes if method in ("exact", "exact-agent") else [100 if method == "optimize" else 0]
            for n in counts:
                ref, out, seconds = paint_one(method, img, n, args.long_side, args.threads, args.preset)
                psnr, ssim = scores(ref, out)
                if method == "flat":
                    flat_psnr = psnr
                gain = "" if flat_psnr is None else f"{psnr - flat_psnr:+.2f} dB"
                rows.append(dict(image=name, kind=kind, method=method, strokes=n, psnr=psnr, ssim=ssim,
                                 gain=None if flat_psnr is None else psnr - flat_psnr, seconds=seconds))
                print(f"| {name} | {kind} | {ref.shape[1]}x{ref.shape[0]} | {method} | {n or '-'} | {psnr:.2f} | "
                      f"{ssim:.3f} | {gain} | {seconds:.1f} s |", flush=True)
                cv2.imwrite(os.path.join(args.out, f"{name}_{method}_{n}.png"),
                            cv2.cvtColor(np.concatenate([ref, out], 1), cv2.COLOR_RGB2BGR))
    print("\nMeans per kind and method (gain over the flat fill):\n")
    print("| kind | method | strokes | images | mean gain | min gain | mean SSIM | mean time |")
    print("|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["kind"], r["method"], r["strokes"]) for r in rows if r["gain"] is not None},
                  key=lambda k: (k[0], METHODS.index(k[1]), k[2]))
    for kind, method, n in keys:
        sel = [r for r in rows if (r["kind"], r["method"], r["strokes"]) == (kind, method, n)]
        print(f"| {kind} | {method} | {n or '-'} | {len(sel)} | {np.mean([r['gain'] for r in sel]):+.2f} dB | "
              f"{min(r['gain'] for r in sel):+.2f} dB | {np.mean([r['ssim'] for r in sel]):.3f} | "
              f"{np.mean([r['seconds'] for r in sel]):.1f} s |")
    if args.batch_images:
        crops = []
        for name, img, kind in images:
            if kind == "photo" and min(img.shape[:2]) >= 256:
                crops.append(np.ascontiguousarray(img[:256, :256]))
        crops = (crops * args.batch_images)[:args.batch_images]
        rates = batch_rate(crops, 250, 256, (1, len(crops)))
        print(f"\nbatch painting, {len(crops)} images of 256x256, 250 strokes, --preset fast: "
              + ", ".join(f"batch {b}: {r:.3f} images/s" for b, r in rates.items()))


if __name__ == "__main__":
    main()
