"""The README's photo figure: scikit-image's `astronaut` and `coffee` painted by `sgfast paint` with
its defaults (--method exact), each row the photo then its painting, 480 px wide each.

    python benchmarks/photo_figure.py [--out docs/photo_paintings.jpg] [--threads 1]

Prints each photo's gain over a flat fill with its mean colour (PSNR at the painting's size) and
the painting's wall time. Needs scikit-image (not a dependency of sgfast) and the compiled ops.
"""
import argparse
import time

import numpy as np
import torch

from paint_photos import load_photo, paint_one, scores  # the benchmark's photos, flat fill and PSNR

PHOTOS = ("astronaut", "coffee")
COLUMN = 480


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/photo_paintings.jpg")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import cv2

    from sgfast.data.tensor_images import to_u8_hwc
    from sgfast.io import atomic_write_bytes
    from sgfast.paint import paint

    torch.set_num_threads(args.threads)
    rows = []
    for name in PHOTOS:
        photo = load_photo(name)
        start = time.perf_counter()
        result = paint([photo], frames="none")[0]  # the defaults of `sgfast paint IMG`
        seconds = time.perf_counter() - start
        painting = to_u8_hwc(result.canvas)
        h, w = painting.shape[:2]
        reference, flat, _ = paint_one("flat", photo, 0, max(h, w), args.threads)
        gain = scores(reference, painting)[0] - scores(reference, flat)[0]
        print(f"{name}: {w}x{h}, {len(result.strokes)} strokes, {gain:+.2f} dB over the flat fill, {seconds:.1f} s")
        size = (COLUMN, round(h * COLUMN / w))
        rows.append(np.concatenate([cv2.resize(photo, size, interpolation=cv2.INTER_AREA),
                                    cv2.resize(painting, size, interpolation=cv2.INTER_AREA)], 1))
    figure = cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR)
    ok, jpeg = cv2.imencode(".jpg", figure, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise SystemExit("photo_figure.py: JPEG encoding failed")
    atomic_write_bytes(args.out, jpeg.tobytes())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
