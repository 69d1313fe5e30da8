"""The test oracle of rasterize_strokes(mode="ltp"): the baseline's label generator `draw(f, width)`,
written with cv2 exactly as the baseline evaluates it (float64 Python arithmetic, truncating int(),
cv2.circle filled discs that later ones overwrite, cv2.resize down by 2).

Facts of the Learning to Paint reference code (its label generator); this is our own transcription.
"""
import cv2
import numpy as np


def draw(f, width=128):
    """1 - alpha of one stroke: float32 [width, width], background 1."""
    x0, y0, x1, y1, x2, y2, z0, z2, w0, w2 = (float(v) for v in f)
    x1 = x0 + (x2 - x0) * x1
    y1 = y0 + (y2 - y0) * y1
    x0 = int(x0 * (2 * width - 1) + 0.5)
    x1 = int(x1 * (2 * width - 1) + 0.5)
    x2 = int(x2 * (2 * width - 1) + 0.5)
    y0 = int(y0 * (2 * width - 1) + 0.5)
    y1 = int(y1 * (2 * width - 1) + 0.5)
    y2 = int(y2 * (2 * width - 1) + 0.5)
    z0 = int(1 + z0 * width // 2)
    z2 = int(1 + z2 * width // 2)
    canvas = np.zeros([width * 2, width * 2]).astype("float32")
    tmp = 1.0 / 100
    for i in range(100):
        t = i * tmp
        x = int((1 - t) * (1 - t) * x0 + 2 * t * (1 - t) * x1 + t * t * x2)
        y = int((1 - t) * (1 - t) * y0 + 2 * t * (1 - t) * y1 + t * t * y2)
        z = int((1 - t) * z0 + t * z2)
        w = (1 - t) * w0 + t * w2
        cv2.circle(canvas, (y, x), z, w, -1)
    return 1 - cv2.resize(canvas, dsize=(width, width))


def alpha_batch(params, width):
    """alpha = 1 - draw for every row of params ([N, 10] array-like): float32 [N, width, width]."""
    params = np.asarray(params, dtype=np.float64)
    out = np.empty((len(params), width, width), np.float32)
    for k, f in enumerate(params):
        out[k] = 1 - draw(f, width)
    return out
