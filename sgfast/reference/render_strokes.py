"""Eager reference of `render_strokes`: the exact stroke renderer fused with compositing.

Plain PyTorch, differentiable in canvas and strokes, any floating dtype (float64 for gradcheck), any
device. It is the test oracle of sgfast.ops.render_strokes and the `--ops eager` path. Contract:
docs/ops/render_strokes.md. Per stroke, in order:

    s(p)     = max over t in [0, 1] of  R(t) - |p - B(t)|          (pixels; t^ the largest maximiser)
    alpha(p) = clamp(0.5 + s(p) / softness, 0, 1) * w(t^)
    C        = C * (1 - alpha) + alpha * color * gate

t^ is found by sampling t at `t_samples` evenly spaced values (the last of equal maxima wins), then
polishing the best sample by a bracketed Newton iteration on f'(t) = 0 (`refine`, on by default);
the search runs without autograd, and s is then evaluated at the fixed t^, so autograd gives the
envelope gradient at t^ (argmax has no gradient), as the fused op does. Unlike the fused op it
evaluates every stroke at every pixel and stores what autograd needs per stroke.
"""
import math

import torch

from sgfast.op_args import check_render_args, check_render_values

# Elements of one [B, samples, H, W] block of the t search.
_BLOCK = 1 << 22
_NEWTON_STEPS = 60  # at most: Newton converges in a few, bisection (a kink of f) in ~50


def stroke_geometry(strokes, h, w):
    """Per stroke, in pixels (x = rows scaled by H, y = columns by W, radii by sqrt(H W)):
    B(t) = A t^2 + V t + P, R(t) = R0 + dR t, w(t) = w0 + (w2 - w0) t; each [B, N], differentiable."""
    x0, y0, x1, y1, x2, y2, z0, z2, w0, w2 = strokes[..., :10].unbind(-1)
    x1 = x0 + (x2 - x0) * x1  # relative middle point
    y1 = y0 + (y2 - y0) * y1

    def coord(v, side):
        return (255 * v + 0.5) / 256 * side

    X0, X1, X2 = coord(x0, h), coord(x1, h), coord(x2, h)
    Y0, Y1, Y2 = coord(y0, w), coord(y1, w), coord(y2, w)
    rho = math.sqrt(h * w)
    r0, r2 = (1 + 64 * z0) / 256 * rho, (1 + 64 * z2) / 256 * rho
    return dict(ax=X0 - 2 * X1 + X2, ay=Y0 - 2 * Y1 + Y2, vx=2 * (X1 - X0), vy=2 * (Y1 - Y0), px=X0, py=Y0,
                r0=r0, dr=r2 - r0, w0=w0, w2=w2)


def d_eps(dtype, h, w):
    """Distance (pixels) from the centre line below which the gradient through |p - B(t^)| is 0: there p
    lies on the centre line, a kink of |p - B| whose direction rounding decides; the fused kernels take
    the same symmetric subgradient with the same threshold, 8 (H + W) machine epsilons."""
    return 8 * (h + w) * torch.finfo(dtype).eps


def _safe_norm(ex, ey, eps):
    """|E|, with a zero gradient where |E| <= eps."""
    d2 = ex * ex + ey * ey
    far = d2 > eps * eps
    d = torch.sqrt(torch.where(far, d2, torch.ones_like(d2)))
    return torch.where(far, d, torch.sqrt(d2.detach()))


def _search_t(g, k, rows, cols, t_samples, refine):
    """t^ of stroke k at every pixel, [B, H, W] (no autograd)."""
    ax, ay, vx, vy, px, py, r0, dr = (g[n][:, k].detach()[:, None, None, None]
                                      for n in ("ax", "ay", "vx", "vy", "px", "py", "r0", "dr"))
    b, h, w = ax.shape[0], rows.shape[0], cols.shape[0]
    dtype, device = rows.dtype, rows.device
    ts = torch.linspace(0, 1, t_samples, dtype=dtype, device=device)
    pr, pc = rows.view(1, 1, h, 1), cols.view(1, 1, 1, w)
    best_f = torch.full((b, h, w), -math.inf, dtype=dtype, device=device)
    best_i = torch.zeros((b, h, w), dtype=torch.long, device=device)
    chunk = max(1, _BLOCK // max(1, b * h * w))
    for s0 in range(0, t_samples, chunk):
        t = ts[s0:s0 + chunk].view(1, -1, 1, 1)
        f = (r0 + dr * t) - torch.sqrt(((ax * t + vx) * t + px - pr) ** 2 + ((ay * t + vy) * t + py - pc) ** 2)
        # The last of equal maxima: argmax of the flipped block.
        val, idx = f.flip(1).max(dim=1)
        idx = s0 + f.shape[1] - 1 - idx
        take = val >= best_f
        best_f = torch.where(take, val, best_f)
        best_i = torch.where(take, idx, best_i)
    t0 = ts[best_i]
    if not refine or t_samples < 2:
        return t0
    # Bracketed Newton on f'(t) = 0 around the best sample: Newton steps inside the bracket, bisection
    # otherwise; the bracket shrinks by the sign of f' (f' > 0: the maximum lies to the right).
    ax, ay, vx, vy, px, py, r0, dr = (v[:, 0] for v in (ax, ay, vx, vy, px, py, r0, dr))
    pr, pc = pr[:, 0], pc[:, 0]
    lo = ts[(best_i - 1).clamp(min=0)]
    hi = ts[(best_i + 1).clamp(max=t_samples - 1)]
    t = t0.clone()

    def f_of(t):
        ex = (ax * t + vx) * t + px - pr
        ey = (ay * t + vy) * t + py - pc
        return r0 + dr * t - torch.sqrt(ex * ex + ey * ey)

    for _ in range(_NEWTON_STEPS):
        ex = (ax * t + vx) * t + px - pr
        ey = (ay * t + vy) * t + py - pc
        bx, by = 2 * ax * t + vx, 2 * ay * t + vy
        d = torch.sqrt(ex * ex + ey * ey)
        ok = d > 0
        dd = torch.where(ok, d, torch.ones_like(d))
        q = ex * bx + ey * by
        fp = torch.where(ok, dr - q / dd, torch.zeros_like(d))
        fpp = -(bx * bx + by * by + 2 * (ex * ax + ey * ay)) / dd + q * q / (dd * dd * dd)
        lo = torch.where(fp > 0, t, lo)
        hi = torch.where(fp < 0, t, hi)
        newton = t - fp / torch.where(fpp < 0, fpp, -torch.ones_like(fpp))
        inside = (fpp < 0) & ok & (newton >= lo) & (newton <= hi)
        t_next = torch.where(fp == 0, t, torch.where(inside, newton, 0.5 * (lo + hi)))
        if torch.equal(t_next, t):
            break
        t = t_next
    return torch.where(f_of(t) >= f_of(t0), t, t0)


def render_strokes(canvas, strokes, mask=None, layer=None, softness=1.0, *, t_samples=257, refine=True,
                   eps_dtype=None):
    """Paints strokes [B, N, 13] onto canvas [B, 3, H, W] in order; returns the new canvas.

    mask [B, 1, H, W] and layer [N] bool gate the colours exactly as in composite; softness is the
    width of the anti-aliasing ramp in pixels. t_samples: evenly spaced t of the search for t^;
    refine: polish the best sample by Newton steps (docs/ops/render_strokes.md). eps_dtype: the dtype
    whose d_eps applies (default the canvas dtype; tests of float32 kernels against a float64
    reference pass float32).
    """
    layer, softness = check_render_args(canvas, strokes, mask, layer, softness)
    check_render_values(strokes)
    if not isinstance(t_samples, int) or t_samples < 2:
        raise ValueError(f"sgfast.render_strokes: argument 't_samples': expected an int >= 2, got {t_samples!r}")
    b, _, h, w = canvas.shape
    n = strokes.shape[1]
    dtype, device = canvas.dtype, canvas.device
    if n == 0 or b == 0 or h * w == 0:
        return canvas.clone()
    g = stroke_geometry(strokes, h, w)
    rows = torch.arange(h, dtype=dtype, device=device) + 0.5
    cols = torch.arange(w, dtype=dtype, device=device) + 0.5
    pr, pc = rows.view(1, h, 1), cols.view(1, 1, w)
    color = strokes[..., 10:13]
    eps = d_eps(eps_dtype or dtype, h, w)
    out = canvas
    for k in range(n):
        with torch.no_grad():
            t = _search_t(g, k, rows, cols, t_samples, refine)  # [B, H, W]
        v = {name: val[:, k, None, None] for name, val in g.items()}
        ex = (v["ax"] * t + v["vx"]) * t + v["px"] - pr
        ey = (v["ay"] * t + v["vy"]) * t + v["py"] - pc
        s = v["r0"] + v["dr"] * t - _safe_norm(ex, ey, eps)
        opacity = (1 - t) * v["w0"] + t * v["w2"]
        alpha = (torch.clamp(0.5 + s / softness, 0, 1) * opacity).unsqueeze(1)  # [B, 1, H, W]
        paint = alpha * color[:, k, :, None, None]
        if mask is not None:
            fg = True if layer is None else bool(layer[k])
            paint = paint * (mask if fg else 1 - mask)
        out = out * (1 - alpha) + paint
    return out
