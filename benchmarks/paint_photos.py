"""Coarse-to-fine exact stroke optimisation (sgfast/paint/exact_optimizer.py) on real photographs
bundled with scikit-image (no download): PSNR and SSIM of the painting against the photo at the
photo's own size, the gain over a flat fill with the photo's mean colour, and the wall time.

    python benchmarks/paint_photos.py [--photos astronaut coffee chelsea rocket] [--strokes 250 1000]
        [--preset fast] [--long-side 512] [--threads 2] [--out out/paint_photos]

Needs scikit-image (`pip install scikit-image`; not a dependency of sgfast) and the compiled
render_strokes op. Prints a markdown table and writes photo | painting PNGs under --out.
"""
import argparse
import math
import os
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", nargs="+", default=["astronaut", "coffee", "chelsea", "rocket"])
    ap.add_argument("--strokes", nargs="+", type=int, default=[250, 1000])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--long-side", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="out/paint_photos")
    args = ap.parse_args()
    try:
        import skimage.data
        from skimage.metrics import structural_similarity
    except ImportError:
        raise SystemExit("paint_photos.py needs scikit-image: pip install scikit-image") from None
    import cv2

    from sgfast.ops.render_strokes import render_strokes
    from sgfast.paint.exact_optimizer import optimize_exact, render_painting

    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    print(f"| photo | size | strokes | preset | PSNR | flat fill PSNR | gain | SSIM | time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.photos:
        photo = getattr(skimage.data, name)()
        if photo.ndim == 2:
            photo = np.repeat(photo[:, :, None], 3, axis=2)
        target = torch.from_numpy(photo[:, :, :3].copy()).permute(2, 0, 1)[None].float() / 255
        h, w = target.shape[-2:]
        flat = float(((target - target.mean((2, 3), keepdim=True)) ** 2).mean())
        for n in args.strokes:
            start = time.perf_counter()
            strokes, background = optimize_exact(target, n, render_strokes, long_side=args.long_side,
                                                 preset=args.preset)
            elapsed = time.perf_counter() - start
            painting = render_painting(strokes, background, h, w, render_strokes)
            l2 = float(((painting - target) ** 2).mean())
            u8 = (painting[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
            ssim = structural_similarity(photo[:, :, :3], u8, channel_axis=2)
            psnr, psnr_flat = 10 * math.log10(1 / l2), 10 * math.log10(1 / flat)
            print(f"| {name} | {w}x{h} | {n} | {args.preset} | {psnr:.2f} | {psnr_flat:.2f} | "
                  f"{psnr - psnr_flat:.2f} dB | {ssim:.3f} | {elapsed:.1f} s |", flush=True)
            side = cv2.cvtColor(np.concatenate([photo[:, :, :3], u8], 1), cv2.COLOR_RGB2BGR)
            cv2.imwrite(os.path.join(args.out, f"{name}_{n}_{args.preset}.png"), side)


if __name__ == "__main__":
    main()
