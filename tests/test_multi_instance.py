"""Multiple foreground instances (paper Sec. 5, Eq. 16): every step paints the instance
u = argmax_i ||S_i (I - C_t)||_F, leaving out (min_gain, sgfast/paint/instances.py) instances whose
painting stopped lowering their error.

- The selection rule on controlled canvases (the answer is known by construction, and it is not
  "the largest instance"), and min_gain on scripted canvases, step by step.
- End to end on `sgfast make-dataset scenes` output with a scripted agent whose foreground strokes
  do lower the chosen instance's error (it paints the instance's box in the instance's mean colour,
  rendered by the exact rasterizer): plain Eq. 16 paints every instance, and at every step the
  painted instance is the argmax recomputed here from that step's canvas.
- The shipped tiny sg agent: every step's choice against an oracle recomputed from the progress
  frames (plain Eq. 16 and the default rule), and with the default rule every instance of the
  generated and the bundled scenes gets strokes (plain Eq. 16 leaves some out: docs/painting.md).
- The CLI with --instances writes one mask per instance and a stroke file that re-renders;
  --min-gain reaches the painting.
"""
import glob
import json
import os

import numpy as np
import pytest
import torch

from sgfast import cli
from sgfast.ops import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="sgfast extension not built")

STEPS = 8


def test_selection_follows_eq16_on_controlled_canvases():
    from sgfast.paint.instances import instance_errors, select_instances

    g = torch.Generator().manual_seed(0)
    s = 16
    target = torch.rand(3, 3, s, s, generator=g)
    big, small = torch.zeros(s, s), torch.zeros(s, s)
    big[:, :10] = 1          # 160 pixels
    small[12:14, 12:14] = 1  # 4 pixels
    masks = torch.stack([big, small])
    canvas = target.clone()
    canvas[0, :, :, :10] += 0.05     # image 0: a small error spread over the big instance
    canvas[0, :, 12:14, 12:14] = 1 - target[0, :, 12:14, 12:14] + 0.5  # a large one on the small instance
    canvas[1] = 0                     # image 1: nothing painted: the big instance has more error
    # image 2: no error under either mask except 0.3 everywhere under the small one; soft big mask
    canvas[2, :, 12:14, 12:14] += 0.3
    soft = torch.stack([big * 0.5, small])
    u = select_instances(target, canvas, [masks, masks, soft])
    oracle = [max(range(2), key=lambda i: float(((m[i][None] * (target[b] - canvas[b])) ** 2).sum()))
              for b, m in enumerate([masks, masks, soft])]
    assert u.tolist() == oracle == [1, 0, 1]
    # ||S (I - C)||_F computed directly
    e = instance_errors(target[1], canvas[1], masks)
    assert torch.allclose(e, torch.stack([(m * target[1]).pow(2).sum().sqrt() for m in masks]))
    # the instance count may differ per image
    three = torch.cat([masks, torch.ones(1, s, s)])
    assert select_instances(target[:2], canvas[:2], [three, masks]).tolist() == [2, 0]


def test_picker_leaves_out_instances_whose_painting_stopped_paying():
    """min_gain on scripted canvases (instance areas 16 / 9 / 4 on a white target, black canvas):
    the expected choice of every step follows from the errors by hand."""
    from sgfast.paint.instances import InstancePicker

    s = 8
    target = torch.ones(2, 3, s, s)
    masks = torch.zeros(3, s, s)
    masks[0, :4, :4] = 1     # 16 px: error sqrt(48) while unpainted
    masks[1, 5:8, 5:8] = 1   # 9 px: sqrt(27)
    masks[2, 0:2, 6:8] = 1   # 4 px: sqrt(12)
    two = masks[1:]          # image 1: the same canvases, instances 1 and 2 only
    picker = InstancePicker(target, [masks, two], min_gain=0.1)
    plain = InstancePicker(target, [masks, two], min_gain=None)
    canvas = torch.zeros(2, 3, s, s)
    seq = []

    def step():
        seq.append((picker.pick(canvas).tolist(), plain.pick(canvas).tolist()))

    # image 0: instances 0/1/2; image 1: its 0/1 are image 0's 1/2 (errors below are image 0's)
    step()                       # 0: errors 48/27/12 (squared): the argmax, 0 (image 1: 0)
    step()                       # 1: nothing changed: 0 is left out -> 1 (image 1: its 0 out -> 1)
    canvas[:, :, 5:7, 5:8] = 1   # 6 of instance 1's 9 px painted: 27 -> 9
    step()                       # 2: 1 gained, 9 < 12 -> 2 (image 1: both out -> plain argmax, 1)
    canvas[:, :, 0:2, 6:8] = 1   # instance 2 painted exactly: 12 -> 0
    step()                       # 3: 2 gained; 1 (9) > 2 (0) -> 1 (image 1: plain, 0)
    step()                       # 4: 1 did not gain: out -> 2, the only one left (image 1: 0)
    step()                       # 5: 2 did not gain: all out -> plain argmax, 0 (image 1: 0)
    assert [p for p, _ in seq] == [[0, 0], [1, 1], [2, 1], [1, 0], [2, 0], [0, 0]], seq
    assert [q for _, q in seq] == [[0, 0], [0, 0], [0, 1], [0, 0], [0, 0], [0, 0]], seq
    with pytest.raises(ValueError, match="min_gain"):
        InstancePicker(target, [masks, two], min_gain=1.0)


class ScriptedActor(torch.nn.Module):
    """Paints the chosen instance (the mask channel of the actor input) in its mean target colour:
    background strokes invisible (opacity 0), the foreground strokes three horizontal bands covering
    the instance's box. Strokes in the exact rasterizer's geometry (docs/ops/rasterize.md)."""

    def __init__(self, k_bg, k_fg):
        super().__init__()
        self.k_bg, self.k_fg = k_bg, k_fg

    def forward(self, x):
        b, _, s, _ = x.shape
        out = torch.zeros(b, self.k_bg + self.k_fg, 13)
        for i in range(b):
            img, m = x[i, 3:6], x[i, 9]
            rows, cols = torch.nonzero(m > 0.5, as_tuple=True)
            if rows.numel() == 0:
                continue
            r0, r1 = float(rows.min()) / s, float(rows.max() + 1) / s
            c0, c1 = float(cols.min()) / s, float(cols.max() + 1) / s
            colour = (img * m).sum((1, 2)) / m.sum()
            band = (r1 - r0) / self.k_fg
            rad = min(band / 2 + 1 / s, 65 / 256)
            z = max(0.0, min(1.0, (rad * 256 - 1) / 64))
            v = lambda p: min(1.0, max(0.0, (p * 256 - 0.5) / 255))  # noqa: E731
            for j in range(self.k_fg):
                row = r0 + (j + 0.5) * band
                out[i, self.k_bg + j, :10] = torch.tensor([v(row), v(c0 + rad / 2), 0.5, 0.5, v(row),
                                                           v(c1 - rad / 2), z, z, 1.0, 1.0])
                out[i, self.k_bg + j, 10:] = colour
        return out.view(b, -1)


class ExactRenderer(torch.nn.Module):
    """Stands in for the neural renderer: rasterize_strokes(mode="exact")."""

    def __init__(self, size):
        super().__init__()
        self.config = type("Cfg", (), {"size": size})()

    def forward(self, params):
        from sgfast.ops import rasterize_strokes

        return rasterize_strokes(params.contiguous(), self.config.size, "exact", 2)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes") / "ds"
    assert cli.main(["make-dataset", "scenes", "--out", str(out), "--num", "4", "--size", "64", "--seed", "3",
                     "--workers", "1", "--no-progress"]) == 0
    items = []
    for line in open(out / "images.txt"):
        idx, rel = line.split()
        inst = sorted(glob.glob(str(out / "instances" / (os.path.splitext(rel)[0] + "_*.png"))))
        items.append((str(out / "images" / rel), inst))
    assert all(len(inst) >= 2 for _, inst in items)
    return items


@pytest.fixture(scope="module")
def models():
    from sgfast.paint import load_models

    return load_models("sg", need_segmenter=False)


def _check_choices(r, steps, min_gain=None):
    """At every step the painted instance is the argmax of the errors recomputed here from that
    step's canvas (Eq. 16), over the instances not left out: with min_gain, an instance is left out
    once a step that painted it ended with its error >= (1 - min_gain) x its lowest before, unless
    all are."""
    from sgfast.paint.instances import instance_errors

    k = len(r.strokes) // steps
    out = torch.zeros(r.masks.shape[0], dtype=torch.bool)
    best = last = None
    for t in range(steps):
        canvas = torch.from_numpy(r.frames[t]).permute(2, 0, 1).float() / 255
        err = instance_errors(r.target, canvas, r.masks)
        if min_gain is not None and last is not None and err[last] >= (1 - min_gain) * best[last]:
            out[last] = True
        best = err if best is None else torch.minimum(best, err)
        allowed = [i for i in range(len(err)) if not out[i]] or list(range(len(err)))
        u = max(allowed, key=lambda i: (float(err[i]), -i))
        assert set(r.mask_ids[t * k:(t + 1) * k]) == {u}, (r.name, t, err, out)
        last = u


def test_every_instance_gets_strokes_when_painting_lowers_its_error(scenes, models):
    import dataclasses

    from sgfast.paint.instances import instance_errors
    from sgfast.paint import paint

    meta = models.meta
    scripted = dataclasses.replace(models, actor=ScriptedActor(meta["strokes_bg"], meta["strokes_fg"]),
                                   renderer=ExactRenderer(models.size))
    results = paint([p for p, _ in scenes], method="agent", instances=[i for _, i in scenes], steps=STEPS,
                    frames="step", models=scripted, batch_size=4, min_gain=None)
    for r, (_, inst) in zip(results, scenes):
        assert r.ok and r.masks.shape[0] == len(inst)
        _check_choices(r, STEPS)
        assert set(r.mask_ids) == set(range(len(inst))), (r.name, r.mask_ids)
        # the premise of this test: painting an instance for the first time lowers its error
        k = len(r.strokes) // STEPS
        first = {}
        for t in range(STEPS):
            first.setdefault(r.mask_ids[t * k], t)
        for u, t in first.items():
            before, after = (instance_errors(r.target, torch.from_numpy(r.frames[j]).permute(2, 0, 1).float() / 255,
                                             r.masks)[u] for j in (t, t + 1))
            assert after < before


@pytest.mark.parametrize("min_gain", [None, 0.1])
def test_tiny_agent_follows_the_rule_on_scenes(scenes, models, min_gain):
    from sgfast.paint import paint

    results = paint([p for p, _ in scenes], method="agent", instances=[i for _, i in scenes], steps=STEPS,
                    frames="step", models=models, batch_size=4, min_gain=min_gain)
    for r in results:
        assert r.ok
        _check_choices(r, STEPS, min_gain)


def test_tiny_agent_paints_every_instance_with_the_default_rule(scenes, models):
    """The shipped sg agent with the default min_gain: every instance gets fg strokes, on generated
    scenes and on the bundled ones (plain Eq. 16 leaves some out: docs/painting.md)."""
    from sgfast.paint import paint

    bundled = os.path.join(os.path.dirname(__file__), "..", "sgfast", "assets", "samples", "scenes")
    items = list(scenes)
    for img in sorted(glob.glob(os.path.join(bundled, "images", "*.jpg"))):
        name = os.path.splitext(os.path.basename(img))[0]
        items.append((img, sorted(glob.glob(os.path.join(bundled, "instances", name + "_*.png")))))
    assert len(items) == len(scenes) + 2 and all(len(inst) >= 2 for _, inst in items)
    results = paint([p for p, _ in items], method="agent", instances=[i for _, i in items], frames="none",
                    models=models, batch_size=8)
    for r, (_, inst) in zip(results, items):
        assert r.ok
        assert {u for u, layer in zip(r.mask_ids, r.layers) if layer == "fg"} == set(range(len(inst))), r.name
        assert r.painted_instances == set(range(len(inst)))


def test_cli_instances_outputs(scenes, tmp_path):
    img, inst = scenes[0]
    out = tmp_path / "out"
    assert cli.main(["paint", "--method", "agent", img, "--instances", ",".join(inst), "--out", str(out),
                     "--steps", "3", "--no-progress", "--threads", "1", "--size", "64"]) == 0
    folder = out / os.path.splitext(os.path.basename(img))[0]
    assert sorted(p.name for p in folder.glob("mask_*.png")) == [f"mask_{i}.png" for i in range(len(inst))]
    doc = json.loads((folder / "strokes.json").read_text())
    assert doc["masks"] == [f"mask_{i}.png" for i in range(len(inst))]
    assert {s["mask"] for s in doc["strokes"]} <= set(range(len(inst)))
    assert cli.main(["render", str(folder / "strokes.json"), "--size", "64", "--out", str(tmp_path / "r.png")]) == 0
    from sgfast.data.imageio import read_image_rgb

    np.testing.assert_array_equal(read_image_rgb(str(tmp_path / "r.png")), read_image_rgb(str(folder / "painting_64.png")))


def test_cli_min_gain(tmp_path, capsys):
    """--min-gain reaches the painting: on a bundled scene (2 instances, the agent's 10 steps) plain
    Eq. 16 ('off') paints one instance, the default both. Bad values are refused."""
    scenes = os.path.join(os.path.dirname(__file__), "..", "sgfast", "assets", "samples", "scenes")
    img = os.path.join(scenes, "images", "scene_000001.jpg")
    inst = sorted(glob.glob(os.path.join(scenes, "instances", "scene_000001_*.png")))
    assert len(inst) == 2
    painted = {}
    for opt in (["--min-gain", "off"], []):
        out = tmp_path / (opt[-1] if opt else "default")
        assert cli.main(["paint", "--method", "agent", img, "--instances", ",".join(inst), "--out", str(out),
                         "--no-video", "--no-progress", "--threads", "1", *opt]) == 0
        doc = json.loads((out / "scene_000001" / "strokes.json").read_text())
        painted[opt[-1] if opt else "default"] = {s["mask"] for s in doc["strokes"] if s["layer"] == "fg"}
    assert len(painted["off"]) == 1 and painted["default"] == {0, 1}, painted
    for bad in ("1", "-0.1", "much"):
        with pytest.raises(SystemExit):
            cli.main(["paint", "--method", "agent", img, "--instances", ",".join(inst), "--out", str(tmp_path / "x"),
                      "--min-gain", bad])
        assert "--min-gain" in capsys.readouterr().err
    from sgfast.paint import PaintError, paint

    with pytest.raises(PaintError, match="min_gain"):
        paint([img], method="agent", instances=[inst], min_gain=1.0)


class FixedActor(torch.nn.Module):
    """The same visible strokes at every step (background ones included), whatever the input."""

    def __init__(self, k, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.action = torch.rand(k, 13, generator=g)
        self.action[:, 6:8] *= 0.5       # radii up to half the largest
        self.action[:, 8:10] = 0.5 + 0.5 * self.action[:, 8:10]  # clearly visible

    def forward(self, x):
        return self.action.reshape(1, -1).expand(x.shape[0], -1)


@pytest.mark.parametrize("bg_gate", ["chosen", "union"])
def test_bg_gate_against_step_by_step_oracle(scenes, models, bg_gate):
    """Each step, recomputed here with the reference composite: Eq. 16 (plain) picks u; the bg strokes are
    gated by 1 - S_u ("chosen") or 1 - max_i S_i ("union"), the fg strokes by S_u; the canvas is
    kept on uint8 levels. The exports index the union as the last gate mask."""
    import dataclasses

    from sgfast.paint.instances import select_instances
    from sgfast.paint import paint
    from sgfast.reference import composite

    meta = models.meta
    kb, kf = meta["strokes_bg"], meta["strokes_fg"]
    fake = dataclasses.replace(models, actor=FixedActor(kb + kf), renderer=ExactRenderer(models.size))
    results = paint([p for p, _ in scenes], method="agent", instances=[i for _, i in scenes], steps=4, frames="step",
                    models=fake, batch_size=4, bg_gate=bg_gate, min_gain=None)
    for r in results:
        m = r.masks.shape[0]
        assert r.ok and m >= 2
        a = fake.actor.action
        alpha = fake.renderer(a[:, :10])[None]
        colour = a[None, :, 10:]
        canvas = torch.zeros(1, 3, r.size, r.size)
        for t in range(4):
            np.testing.assert_array_equal(r.frames[t], (canvas[0] * 255).round().byte().permute(1, 2, 0).numpy())
            u = int(select_instances(r.target[None], canvas, [r.masks]))
            s_u = r.masks[u][None, None]
            bg_mask = r.masks.amax(0)[None, None] if bg_gate == "union" else s_u
            c = composite(canvas, alpha[:, :kb], colour[:, :kb], bg_mask, torch.zeros(kb, dtype=torch.bool))
            c = composite(c, alpha[:, kb:], colour[:, kb:], s_u, torch.ones(kf, dtype=torch.bool))
            canvas = (c * 255).round().clamp(0, 255) / 255
            k = kb + kf
            bg_id = m if bg_gate == "union" else u
            assert r.mask_ids[t * k:(t + 1) * k] == [bg_id] * kb + [u] * kf
        torch.testing.assert_close(r.canvas, canvas[0], atol=1.5 / 255, rtol=0)
        assert r.union_gated == (bg_gate == "union")
        assert r.gate_masks.shape[0] == m + (bg_gate == "union")
        inside = r.masks.amax(0) > 0.999
        if bg_gate == "union":  # the background layer never colours an instance: 1 - union is 0 there
            assert inside.any() and float(r.bg_layer[:, inside].abs().max()) == 0
        else:  # it colours the instances that were not the step's
            assert float(r.bg_layer[:, inside].max()) > 0.1


def test_bg_gate_union_with_one_mask_is_the_same_painting(models):
    """One mask: its union is itself, so "union" paints exactly what "chosen" does."""
    from sgfast.paint import paint

    img = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "sgfast", "assets", "samples", "birds",
                                        "images", "*", "*.jpg")))[0]
    mask = img.replace(os.sep + "images" + os.sep, os.sep + "segmentations" + os.sep)[:-4] + ".png"
    a, b = (paint([img], method="agent", masks=[mask], steps=3, models=models, bg_gate=g, frames="none")[0]
            for g in ("chosen", "union"))
    torch.testing.assert_close(a.canvas, b.canvas, atol=0, rtol=0)
    assert a.mask_ids == b.mask_ids and not b.union_gated


def test_cli_bg_gate_union_exports_the_union_and_rerenders(scenes, tmp_path):
    img, inst = scenes[1]
    out = tmp_path / "out"
    assert cli.main(["paint", "--method", "agent", img, "--instances", ",".join(inst), "--bg-gate", "union",
                     "--out", str(out), "--steps", "3", "--no-progress", "--threads", "1", "--size", "64",
                     "--no-video"]) == 0
    folder = out / os.path.splitext(os.path.basename(img))[0]
    doc = json.loads((folder / "strokes.json").read_text())
    assert doc["masks"] == [f"mask_{i}.png" for i in range(len(inst))] + ["mask_union.png"]
    assert {s["mask"] for s in doc["strokes"] if s["layer"] == "bg"} == {len(inst)}
    from sgfast.data.imageio import read_mask

    union = np.max([read_mask(str(folder / f"mask_{i}.png")) for i in range(len(inst))], axis=0)
    np.testing.assert_array_equal(read_mask(str(folder / "mask_union.png")), union)
    assert cli.main(["render", str(folder / "strokes.json"), "--size", "64", "--out", str(tmp_path / "r.png")]) == 0
    from sgfast.data.imageio import read_image_rgb

    np.testing.assert_array_equal(read_image_rgb(str(tmp_path / "r.png")), read_image_rgb(str(folder / "painting_64.png")))


def test_paint_instances_benchmark_script(monkeypatch, capsys):
    """benchmarks/paint_instances.py (docs/painting.md's tables) on the bundled scenes."""
    import runpy

    root = os.path.join(os.path.dirname(__file__), "..")
    monkeypatch.setattr("sys.argv", ["paint_instances.py", os.path.join(root, "sgfast", "assets", "samples", "scenes"),
                                     "--gates", "chosen", "--min-gains", "off,0.1"])
    runpy.run_path(os.path.join(root, "benchmarks", "paint_instances.py"), run_name="__main__")
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| chosen")]
    rows = [[c.strip() for c in r] for r in rows]
    assert [r[:2] for r in rows] == [["chosen", "off"], ["chosen", "0.1"]]
    assert rows[1][2:4] == ["5 / 5", "2 / 2"]  # every instance painted (as the test above)
    assert all(0 < float(c) < 1 for r in rows for c in r[4:])
