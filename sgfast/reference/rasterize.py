"""Eager reference of `rasterize_strokes` (no extension, no cv2): the test oracle's twin and a fallback.

ltp: the baseline generator re-derived in torch float64 with the same operation order (so the integer
truncations agree), OpenCV's filled-circle rule as a half-width table, discs painted in order.
exact: brute force: `t_samples` discs at t = k / (t_samples - 1), later ones overwrite, evaluated at
every supersample point (converges to the exact mode as t_samples grows; see docs/ops/rasterize.md).
"""
import torch

from sgfast.op_args import check_args, check_values

LTP_DISCS = 100


def circle_halfwidths(radius: int) -> list:
    """Half-width of OpenCV's filled circle (cv2.circle, thickness -1, LINE_8) at row offsets 0..radius."""
    out = [0] * (radius + 1)
    err, dx, dy, plus, minus = 0, radius, 0, 1, 2 * radius - 1
    while dx >= dy:
        out[dy] = max(out[dy], dx)
        out[dx] = max(out[dx], dy)
        dy += 1
        err += plus
        plus += 2
        if err > 0:
            err -= minus
            dx -= 1
            minus -= 2
    return out


def _halfwidth_table(rmax: int) -> torch.Tensor:
    """[rmax + 1, rmax + 1] int64: table[r, d] = half-width at row offset d (-1 where d > r)."""
    table = torch.full((rmax + 1, rmax + 1), -1, dtype=torch.int64)
    for r in range(rmax + 1):
        table[r, : r + 1] = torch.tensor(circle_halfwidths(r))
    return table


def ltp_discs(params: torch.Tensor, size: int):
    """Per stroke and disc: (row, col, radius) int64 [N, 100] and opacity float32 [N, 100]."""
    f = params.detach().to("cpu", torch.float64)
    x0, y0, x1, y1, x2, y2, z0, z2, w0, w2 = f.unbind(1)
    x1 = x0 + (x2 - x0) * x1
    y1 = y0 + (y2 - y0) * y1
    scale = float(2 * size - 1)
    # int() of non-negative values = truncation (.long() truncates toward zero too).
    gx = [(v * scale + 0.5).long().double() for v in (x0, x1, x2)]
    gy = [(v * scale + 0.5).long().double() for v in (y0, y1, y2)]
    # int(1 + z * size // 2): float floor division of the product.
    rz0 = 1 + torch.floor(z0 * float(size) / 2)
    rz2 = 1 + torch.floor(z2 * float(size) / 2)
    t = torch.arange(LTP_DISCS, dtype=torch.float64) * (1.0 / 100)  # i * tmp, not i / 100
    u = 1 - t
    a, b, c = u * u, 2 * t * u, t * t
    row = (a * gx[0][:, None] + b * gx[1][:, None] + c * gx[2][:, None]).long()
    col = (a * gy[0][:, None] + b * gy[1][:, None] + c * gy[2][:, None]).long()
    rad = (u * rz0[:, None] + t * rz2[:, None]).long()
    w = (u * w0[:, None] + t * w2[:, None]).float()
    return row, col, rad, w


def _ltp(params: torch.Tensor, size: int) -> torch.Tensor:
    n, side = params.shape[0], 2 * size
    row, col, rad, w = ltp_discs(params, size)
    table = _halfwidth_table(int(rad.max()) if n else 0)
    rr = torch.arange(side).view(1, side, 1)
    cc = torch.arange(side).view(1, 1, side)
    out = torch.empty((n, size, size), dtype=torch.float32)
    chunk = 16
    for s0 in range(0, n, chunk):
        s1 = min(n, s0 + chunk)
        canvas = torch.zeros((s1 - s0, side, side), dtype=torch.float32)
        for i in range(LTP_DISCS):
            r = rad[s0:s1, i].view(-1, 1, 1)
            d = (rr - row[s0:s1, i].view(-1, 1, 1)).abs()  # [n, side, 1]
            inside_rows = d <= r
            hw = table[r.expand_as(d), d.clamp(max=table.shape[1] - 1)]
            mask = inside_rows & ((cc - col[s0:s1, i].view(-1, 1, 1)).abs() <= hw)
            canvas = torch.where(mask, w[s0:s1, i].view(-1, 1, 1), canvas)
        # cv2.resize by exactly 1/2 (INTER_LINEAR) = the 2x2 mean.
        out[s0:s1] = canvas.view(s1 - s0, size, 2, size, 2).sum(dim=(2, 4)) * 0.25
    return out


def exact_geometry(params: torch.Tensor):
    """Control points, radii and opacities of the exact mode, float64, each [N]."""
    f = params.detach().to("cpu", torch.float64)
    x0, y0, x1, y1, x2, y2, z0, z2, w0, w2 = f.unbind(1)
    x1 = x0 + (x2 - x0) * x1
    y1 = y0 + (y2 - y0) * y1
    pts = [(255 * v + 0.5) / 256 for v in (x0, y0, x1, y1, x2, y2)]
    r0, r2 = (1 + 64 * z0) / 256, (1 + 64 * z2) / 256
    return pts, r0, r2, w0, w2


def _exact(params: torch.Tensor, size: int, supersample: int, t_samples: int) -> torch.Tensor:
    n, s = params.shape[0], supersample
    (X0, Y0, X1, Y1, X2, Y2), r0, r2, w0, w2 = exact_geometry(params)
    side = size * s
    coords = (torch.arange(side, dtype=torch.float64) + 0.5) / side  # sample positions, side units
    px = coords.view(1, side, 1)
    py = coords.view(1, 1, side)
    out = torch.empty((n, size, size), dtype=torch.float64)
    for k in range(n):
        value = torch.zeros((1, side, side), dtype=torch.float64)
        for t in torch.linspace(0, 1, t_samples, dtype=torch.float64).tolist():
            u = 1 - t
            bx = u * u * X0[k] + 2 * t * u * X1[k] + t * t * X2[k]
            by = u * u * Y0[k] + 2 * t * u * Y1[k] + t * t * Y2[k]
            r = u * r0[k] + t * r2[k]
            inside = (px - bx) ** 2 + (py - by) ** 2 <= r * r
            value = torch.where(inside, u * w0[k] + t * w2[k], value)
        out[k] = value.view(size, s, size, s).mean(dim=(1, 3))
    return out


def rasterize_strokes(params: torch.Tensor, size: int, mode: str = "ltp", supersample: int = 4, *,
                      t_samples: int = 2048) -> torch.Tensor:
    """Eager twin of sgfast.ops.rasterize_strokes (CPU compute; result on params' device and dtype).

    t_samples: discs of the brute-force exact mode (ignored by ltp)."""
    size, mode, supersample = check_args(params, size, mode, supersample)
    check_values(params)
    if mode == "ltp":
        out = _ltp(params, size)
    else:
        out = _exact(params, size, supersample, t_samples)
    return out.to(device=params.device, dtype=params.dtype)
