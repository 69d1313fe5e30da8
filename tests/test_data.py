"""Loaders read fixtures written here in the real formats; bad input errors name the file."""
import os

import cv2
import numpy as np
import pytest
import torch

from sgfast.data import (CUB200, DatasetFormatError, ImageFolder, ImageReadError, StanfordCars,
                         VirtualKitti2, open_dataset, read_image_rgb, read_label_map, read_mask)
from sgfast.data.imageio import write_palette_png

S = 32  # canvas size of the loaded samples


def _image(h, w, seed):
    """An RGB image with a distinct gradient per channel (catches BGR/RGB and flip mistakes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1),
                    np.full((h, w), rng.integers(0, 255))], 2)
    return rgb.astype(np.uint8)


def _save_rgb(path, rgb):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 100] if path.endswith(".jpg") else []
    assert cv2.imwrite(path, rgb[:, :, ::-1].copy(), params)


def _expected(rgb, size=S):
    return cv2.resize(rgb.astype(np.float32) / 255, (size, size), interpolation=cv2.INTER_AREA)


def _box_of(mask_chw, thr=0.5):
    m = mask_chw[0].numpy() > thr
    ys, xs = np.nonzero(m)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


# ---------------------------------------------------------------------------------------------- CUB

CUB_ITEMS = [  # id, class id, rel path, (h, w), box (x, y, w, h) pixels, is_train
    (1, 1, "001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg", (60, 80), (10.0, 5.0, 40.0, 30.0), 1),
    (2, 1, "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg", (64, 48), (0.0, 0.0, 48.0, 64.0), 0),
    (3, 2, "002.Laysan_Albatross/Laysan_Albatross_0003_1033.jpg", (50, 50), (20.0, 12.0, 16.0, 24.0), 1),
    (4, 2, "002.Laysan_Albatross/Laysan_Albatross_0004_922.jpg", (40, 90), (44.0, 8.0, 30.0, 20.0), 1),
]


def make_cub(root):
    root = str(root)
    lines = {k: [] for k in ("images", "labels", "split", "boxes")}
    for iid, cid, rel, (h, w), (x, y, bw, bh), tr in CUB_ITEMS:
        img = _image(h, w, iid)
        _save_rgb(os.path.join(root, "images", rel), img)
        mask = np.zeros((h, w), np.uint8)
        mask[int(y):int(y + bh), int(x):int(x + bw)] = 255  # the box, so alignment is checkable
        seg = os.path.join(root, "segmentations", rel[:-4] + ".png")
        os.makedirs(os.path.dirname(seg), exist_ok=True)
        cv2.imwrite(seg, mask)
        lines["images"].append(f"{iid} {rel}")
        lines["labels"].append(f"{iid} {cid}")
        lines["split"].append(f"{iid} {tr}")
        lines["boxes"].append(f"{iid} {x} {y} {bw} {bh}")
    for name, key in (("images.txt", "images"), ("image_class_labels.txt", "labels"),
                      ("train_test_split.txt", "split"), ("bounding_boxes.txt", "boxes")):
        with open(os.path.join(root, name), "w") as f:
            f.write("\n".join(lines[key]) + "\n")
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    return root


def test_cub_reads_back_what_was_written(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    ds = CUB200(root, split="all", size=S)
    assert len(ds) == 4 and ds.classes == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    assert not ds.has_parts
    for k, (iid, cid, rel, (h, w), (x, y, bw, bh), _) in enumerate(CUB_ITEMS):
        s = ds[k]
        assert s["image"].shape == (3, S, S) and s["image"].dtype == torch.float32
        assert s["mask"].shape == (1, S, S)
        assert int(s["label"]) == cid - 1 and int(s["index"]) == k and bool(s["has_mask"])
        np.testing.assert_allclose(s["box"].numpy(), [x / w, y / h, bw / w, bh / h], rtol=1e-6)
        got = s["image"].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, _expected(_image(h, w, iid)), atol=0.03)  # JPEG q100
        # The resized mask's extent is the normalised box, to a pixel.
        x0, y0, x1, y1 = _box_of(s["mask"])
        bx = s["box"].numpy() * S
        np.testing.assert_allclose([x0, y0, x1, y1], [bx[0], bx[1], bx[0] + bx[2], bx[1] + bx[3]], atol=1.01)
    assert [int(ds.records[i].label) for i in range(4)] == [0, 0, 1, 1]
    assert len(CUB200(root, split="train", size=S)) == 3
    assert CUB200(root, split="test", size=S).ids == [2]


def test_flip_keeps_image_mask_and_box_aligned(tmp_path):
    root = make_cub(tmp_path / "cub")
    plain = CUB200(root, split="all", size=S)
    flipped = CUB200(root, split="all", size=S, flip=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        s = flipped[0]
        f = bool(s["flipped"])
        seen.add(f)
        p = plain[0]
        if f:
            assert torch.equal(s["image"], p["image"].flip(-1)) and torch.equal(s["mask"], p["mask"].flip(-1))
            b = p["box"]
            assert torch.allclose(s["box"], torch.stack([1 - b[0] - b[2], b[1], b[2], b[3]]))
            x0, _, x1, _ = _box_of(s["mask"])
            assert abs(x0 - float(s["box"][0]) * S) <= 1.01
        else:
            assert torch.equal(s["image"], p["image"]) and torch.equal(s["box"], p["box"])
    assert seen == {True, False}


def test_cub_collates_in_a_dataloader(tmp_path):
    ds = CUB200(make_cub(tmp_path / "cub"), split="all", size=S, flip=True)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, S, S) and batch["box"].shape == (4, 4)
    assert batch["label"].tolist() == [0, 0, 1, 1]
    from sgfast.data import to_tensors
    t = to_tensors(CUB200(ds.root, split="all", size=S), keys=("image", "label"))
    assert t["image"].shape == (4, 3, S, S) and t["label"].tolist() == [0, 0, 1, 1]
    with pytest.raises(KeyError, match="parts"):
        to_tensors(ds, keys=("parts",))


def _rewrite(path, edit):
    with open(path) as f:
        lines = f.read().splitlines()
    with open(path, "w") as f:
        f.write("\n".join(edit(lines)) + "\n")


def test_cub_errors_name_the_file(tmp_path):
    root = make_cub(tmp_path / "cub")
    rel1 = CUB_ITEMS[0][2]
    # An id listed twice.
    _rewrite(os.path.join(root, "images.txt"), lambda ls: ls + [ls[0]])
    with pytest.raises(DatasetFormatError, match=r"images\.txt.*id 1 is listed twice"):
        CUB200(root, split="all")
    _rewrite(os.path.join(root, "images.txt"), lambda ls: ls[:-1])
    # A malformed line.
    _rewrite(os.path.join(root, "bounding_boxes.txt"), lambda ls: ls + ["5 1 2 three 4"])
    with pytest.raises(DatasetFormatError, match=r"bounding_boxes\.txt:5"):
        CUB200(root, split="all")
    _rewrite(os.path.join(root, "bounding_boxes.txt"), lambda ls: ls[:-1])
    # A box outside its image (image 1 is 80 wide).
    _rewrite(os.path.join(root, "bounding_boxes.txt"), lambda ls: ["1 50.0 5.0 40.0 30.0"] + ls[1:])
    ds = CUB200(root, split="all")
    with pytest.raises(DatasetFormatError, match=r"bounding_boxes\.txt.*image id 1.*outside the 80x60 image"):
        ds[0]
    ds[1]  # the others still load
    # An image id without a label.
    _rewrite(os.path.join(root, "image_class_labels.txt"), lambda ls: ls[1:])
    with pytest.raises(DatasetFormatError, match=r"image_class_labels\.txt: no entry for image id 1"):
        CUB200(root, split="all")
    root = make_cub(tmp_path / "cub2")
    # A missing image, then a missing mask.
    os.unlink(os.path.join(root, "images", rel1))
    with pytest.raises(ImageReadError, match="Black_Footed_Albatross_0001_796111.jpg"):
        CUB200(root, split="all")
    root = make_cub(tmp_path / "cub3")
    os.unlink(os.path.join(root, "segmentations", rel1[:-4] + ".png"))
    with pytest.raises(ImageReadError, match=r"mask.*Black_Footed_Albatross_0001_796111\.png"):
        CUB200(root, split="all")
    assert len(CUB200(root, split="all", masks=None)) == 4  # boxes only


@pytest.mark.parametrize("damage", ["truncated_jpg", "garbage", "empty", "truncated_png"])
def test_corrupt_images_raise_naming_the_file(tmp_path, damage):
    root = make_cub(tmp_path / "cub")
    rel = CUB_ITEMS[2][2]
    path = os.path.join(root, "images", rel)
    if damage == "truncated_png":
        path = os.path.join(root, "segmentations", rel[:-4] + ".png")
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write({"truncated_jpg": data[:len(data) // 2], "truncated_png": data[:len(data) // 2],
                 "garbage": os.urandom(300), "empty": b""}[damage])
    ds = CUB200(root, split="all", size=S)
    with pytest.raises(ImageReadError, match=os.path.basename(path).replace(".", r"\.")):
        ds[2]


def test_image_kinds_are_converted(tmp_path):
    rgb = _image(20, 30, 1)
    base = rgb.astype(np.float32) / 255
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cases = {
        "gray.png": (gray, np.repeat(gray[:, :, None].astype(np.float32) / 255, 3, 2)),
        "rgba.png": (np.dstack([rgb[:, :, ::-1], np.full(gray.shape, 128, np.uint8)]), base),
        "rgb16.png": (rgb[:, :, ::-1].astype(np.uint16) * 257, base),
        "gray16.png": (gray.astype(np.uint16) * 257, np.repeat(gray[:, :, None].astype(np.float32) / 255, 3, 2)),
    }
    for name, (stored, want) in cases.items():
        p = str(tmp_path / name)
        assert cv2.imwrite(p, stored)
        got = read_image_rgb(p)
        assert got.shape == (20, 30, 3) and got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)
    # Masks: 0/255, 0/1 and 16-bit all read as [0, 1].
    m = (np.arange(600).reshape(20, 30) % 2).astype(np.uint8)
    for name, stored in (("m255.png", m * 255), ("m01.png", m), ("m16.png", m.astype(np.uint16) * 65535)):
        cv2.imwrite(str(tmp_path / name), stored)
        np.testing.assert_array_equal(read_mask(str(tmp_path / name)), m.astype(np.float32))
    with pytest.raises(ImageReadError, match="not found.*nope.png"):
        read_image_rgb(str(tmp_path / "nope.png"))


def test_image_folder(tmp_path):
    root = tmp_path / "folder"
    imgs = {"a.jpg": _image(20, 40, 1), "sub/b.png": _image(30, 30, 2), "sub/deeper/c.PNG": _image(16, 24, 3)}
    for rel, img in imgs.items():
        _save_rgb(str(root / rel), img)
    (root / "notes.txt").write_text("not an image")
    ds = ImageFolder(root, size=S)
    assert [os.path.relpath(r.image, root) for r in ds.records] == sorted(imgs)
    for k, rel in enumerate(sorted(imgs)):
        s = ds[k]
        np.testing.assert_allclose(s["image"].permute(1, 2, 0).numpy(), _expected(imgs[rel]), atol=0.03)
        assert int(s["label"]) == -1 and not bool(s["has_mask"])
        assert torch.equal(s["box"], torch.tensor([0.0, 0.0, 1.0, 1.0])) and bool((s["mask"] == 1).all())
    with pytest.raises(DatasetFormatError, match="no images"):
        ImageFolder(tmp_path / "folder" / "sub" / "deeper" / "..", extensions=(".gif",))
    assert isinstance(open_dataset("folder", root, size=8), ImageFolder)


# ---------------------------------------------------------------------------------------------- Cars

CARS = [  # fname, (h, w), (x1, y1, x2, y2) 1-based inclusive, class 1-based
    ("00001.jpg", (40, 60), (5, 4, 50, 30), 2),
    ("00002.jpg", (50, 50), (1, 1, 50, 50), 1),
    ("00003.jpg", (30, 70), (20, 10, 60, 25), 3),
]


def make_cars(root, items=CARS):
    sio = pytest.importorskip("scipy.io")
    root = str(root)
    os.makedirs(os.path.join(root, "devkit"), exist_ok=True)
    dtype = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    for split, annos in (("train", "devkit/cars_train_annos.mat"), ("test", "cars_test_annos_withlabels.mat")):
        ann = np.zeros((1, len(items)), dtype=dtype)  # MATLAB's 1xN struct array
        for k, (fname, (h, w), (x1, y1, x2, y2), cls) in enumerate(items):
            _save_rgb(os.path.join(root, f"cars_{split}", fname), _image(h, w, k))
            ann[0, k] = (np.array([[x1]], np.uint8), np.array([[y1]], np.uint8), np.array([[x2]], np.uint8),
                         np.array([[y2]], np.uint8), np.array([[cls]], np.uint8), np.array([fname]))
        sio.savemat(os.path.join(root, annos), {"annotations": ann})
    names = np.empty((1, 3), dtype=object)
    names[0, :] = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
    sio.savemat(os.path.join(root, "devkit", "cars_meta.mat"), {"class_names": names})
    return root


@pytest.mark.parametrize("split", ["train", "test"])
def test_stanford_cars_reads_back_what_was_written(tmp_path, split):
    root = make_cars(tmp_path / "cars")
    ds = StanfordCars(root, split=split, size=S)
    assert ds.classes == ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012"]
    assert len(ds) == 3
    for k, (fname, (h, w), (x1, y1, x2, y2), cls) in enumerate(CARS):
        s = ds[k]
        assert os.path.basename(ds.records[k].image) == fname
        assert int(s["label"]) == cls - 1 and not bool(s["has_mask"])
        want = [(x1 - 1) / w, (y1 - 1) / h, (x2 - x1 + 1) / w, (y2 - y1 + 1) / h]
        np.testing.assert_allclose(s["box"].numpy(), want, rtol=1e-6)
        np.testing.assert_allclose(s["image"].permute(1, 2, 0).numpy(), _expected(_image(h, w, k)), atol=0.03)
        x0, y0, xe, ye = _box_of(s["mask"])  # the stand-in mask is the box
        np.testing.assert_allclose([x0, y0, xe, ye], np.array([want[0], want[1], want[0] + want[2],
                                                               want[1] + want[3]]) * S, atol=1.01)


def test_stanford_cars_errors(tmp_path):
    dup = CARS + [CARS[0]]
    root = make_cars(tmp_path / "dup", dup)
    with pytest.raises(DatasetFormatError, match=r"cars_train_annos\.mat: image 00001\.jpg is listed twice"):
        StanfordCars(root, split="train")
    outside = [("00001.jpg", (40, 60), (5, 4, 70, 30), 1)]
    ds = StanfordCars(make_cars(tmp_path / "out", outside), split="train")
    with pytest.raises(DatasetFormatError, match=r"cars_train_annos\.mat.*00001\.jpg.*outside the 60x40"):
        ds[0]
    root = make_cars(tmp_path / "ok")
    os.unlink(os.path.join(root, "cars_test_annos_withlabels.mat"))
    with pytest.raises(DatasetFormatError, match=r"not found.*cars_test_annos_withlabels\.mat"):
        StanfordCars(root, split="test")
    with open(os.path.join(root, "devkit", "cars_train_annos.mat"), "wb") as f:
        f.write(b"MATLAB 5.0 MAT-file, garbage")
    with pytest.raises(DatasetFormatError, match=r"cannot read MATLAB file .*cars_train_annos\.mat"):
        StanfordCars(root, split="train")


# ---------------------------------------------------------------------------------------------- VKITTI2

VK_H, VK_W = 30, 50
VK_OBJECTS = {  # frame -> [(trackID, (left, right, top, bottom) inclusive)]
    0: [(0, (2, 21, 3, 14)), (3, (30, 44, 10, 27))],
    1: [(3, (25, 49, 0, 19))],
}


def make_vkitti(root):
    root = str(root)
    base = os.path.join(root, "Scene01", "clone")
    palette = np.random.default_rng(0).permutation(256 * 3).reshape(256, 3) % 256  # distinct colours
    palette[0] = 0
    rows = ["frame cameraID trackID left right top bottom number_pixels truncation_ratio occupancy_ratio isMoving"]
    for frame, objs in VK_OBJECTS.items():
        _save_rgb(os.path.join(base, "frames", "rgb", "Camera_0", f"rgb_{frame:05d}.jpg"), _image(VK_H, VK_W, frame))
        inst = np.zeros((VK_H, VK_W), np.uint8)
        for track, (l, r, t, b) in objs:
            inst[t:b + 1, l:r + 1] = track + 1
            rows.append(f"{frame} 0 {track} {l} {r} {t} {b} {(r - l + 1) * (b - t + 1)} 0.0 1.0 True")
        d = os.path.join(base, "frames", "instanceSegmentation", "Camera_0")
        os.makedirs(d, exist_ok=True)
        write_palette_png(os.path.join(d, f"instancegt_{frame:05d}.png"), inst, palette)
    os.makedirs(os.path.join(base, "textgt"), exist_ok=True)
    with open(os.path.join(base, "textgt", "bbox.txt"), "w") as f:
        f.write("\n".join(rows) + "\n")
    with open(os.path.join(base, "textgt", "info.txt"), "w") as f:
        f.write("trackID label model color\n0 Van Volkswagen Red\n3 Car Sedan4Door Black\n")
    return root


def test_palette_label_maps_read_as_indices(tmp_path):
    labels = (np.arange(60).reshape(6, 10) % 7).astype(np.uint8)
    palette = np.array([[0, 0, 0], [10, 20, 30], [200, 1, 1], [1, 200, 1], [1, 1, 200], [9, 9, 9], [255, 255, 0]])
    write_palette_png(str(tmp_path / "p.png"), labels, palette)
    np.testing.assert_array_equal(read_label_map(str(tmp_path / "p.png")), labels)
    cv2.imwrite(str(tmp_path / "g16.png"), labels.astype(np.uint16) * 1000)
    np.testing.assert_array_equal(read_label_map(str(tmp_path / "g16.png")), labels.astype(np.int64) * 1000)


def test_vkitti2_reads_back_what_was_written(tmp_path):
    root = make_vkitti(tmp_path / "vkitti2")
    ds = VirtualKitti2(root, size=S, max_instances=3)
    assert ds.classes == ["Car", "Van"] and len(ds) == 2
    for k, (frame, objs) in enumerate(VK_OBJECTS.items()):
        s = ds[k]
        np.testing.assert_allclose(s["image"].permute(1, 2, 0).numpy(), _expected(_image(VK_H, VK_W, frame)), atol=0.03)
        order = sorted(objs, key=lambda o: -(o[1][1] - o[1][0] + 1) * (o[1][3] - o[1][2] + 1))
        assert int(s["num_instances"]) == len(objs)
        union = np.zeros((VK_H, VK_W), np.float32)
        for j, (track, (l, r, t, b)) in enumerate(order):
            want = [l / VK_W, t / VK_H, (r - l + 1) / VK_W, (b - t + 1) / VK_H]
            np.testing.assert_allclose(s["instance_boxes"][j].numpy(), want, rtol=1e-6)
            assert int(s["instance_labels"][j]) == (0 if track == 3 else 1)
            m = np.zeros((VK_H, VK_W), np.float32)
            m[t:b + 1, l:r + 1] = 1
            union += m
            np.testing.assert_allclose(s["instance_masks"][j].numpy(), cv2.resize(m, (S, S), interpolation=cv2.INTER_LINEAR), atol=1e-5)
        np.testing.assert_allclose(s["mask"][0].numpy(), cv2.resize(union, (S, S), interpolation=cv2.INTER_LINEAR), atol=1e-5)
        assert torch.equal(s["box"], s["instance_boxes"][0]) and int(s["label"]) == int(s["instance_labels"][0])
        assert bool((s["instance_masks"][len(objs):] == 0).all()) and bool((s["instance_labels"][len(objs):] == -1).all())
    torch.manual_seed(1)
    fl = VirtualKitti2(root, size=S, flip=True)
    for _ in range(8):
        s, p = fl[0], ds[0]
        if bool(s["flipped"]):
            assert torch.equal(s["instance_masks"][:2], p["instance_masks"][:2].flip(-1))
            b = p["instance_boxes"][0]
            assert torch.allclose(s["instance_boxes"][0], torch.stack([1 - b[0] - b[2], b[1], b[2], b[3]]))


def test_vkitti2_errors(tmp_path):
    root = make_vkitti(tmp_path / "vk")
    bbox = os.path.join(root, "Scene01", "clone", "textgt", "bbox.txt")
    _rewrite(bbox, lambda ls: ls + [ls[1]])
    with pytest.raises(DatasetFormatError, match=r"bbox\.txt:5: track 0 is listed twice"):
        VirtualKitti2(root)
    _rewrite(bbox, lambda ls: ls[:-1] + ["1 0 7 40 60 0 5 100 0 1 True"])  # right = 60 > width 50
    ds = VirtualKitti2(root, size=S)
    with pytest.raises(DatasetFormatError, match=r"bbox\.txt \(frame 1, camera 0\).*outside the 50x30"):
        ds[1]
    os.unlink(os.path.join(root, "Scene01", "clone", "frames", "instanceSegmentation", "Camera_0", "instancegt_00001.png"))
    with pytest.raises(ImageReadError, match=r"instancegt_00001\.png"):
        VirtualKitti2(root)
    with pytest.raises(DatasetFormatError, match="no SceneXX"):
        VirtualKitti2(tmp_path / "empty")


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncation_check_independent_of_the_decoder(ext):
    # Some OpenCV builds decode a cut JPEG with grey rows and only warn; the byte-level check must
    # catch every cut, and accept padding after the end marker.
    from sgfast.data.imageio import _check_complete
    img = np.random.default_rng(0).integers(0, 255, (100, 100, 3)).astype(np.uint8)
    data = cv2.imencode(ext, img)[1].tobytes()
    _check_complete("ok" + ext, data)
    _check_complete("padded" + ext, data + b"\0" * 300)
    for frac in (0.2, 0.5, 0.9, 0.99):
        with pytest.raises(ImageReadError, match="truncated.*cut" + ext.replace(".", r"\.")):
            _check_complete("cut" + ext, data[:int(len(data) * frac)])


def test_cub_alternative_masks_and_boxes(tmp_path):
    # e.g. predicted masks stored as JPEG and a predicted box file in the CUB format.
    root = make_cub(tmp_path / "cub")
    for iid, _, rel, (h, w), _, _ in CUB_ITEMS:
        pred = np.zeros((h, w), np.uint8)
        pred[: h // 2, : w // 2] = 255
        p = os.path.join(root, "segmentations_pred", rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        cv2.imwrite(p, pred, [cv2.IMWRITE_JPEG_QUALITY, 100])
    with open(os.path.join(root, "bounding_boxes_pred.txt"), "w") as f:
        f.write("".join(f"{it[0]} 0 0 {it[3][1] / 2} {it[3][0] / 2}\n" for it in CUB_ITEMS))
    ds = CUB200(root, split="all", size=S, masks="segmentations_pred", mask_ext=".jpg",
                boxes_file="bounding_boxes_pred.txt")
    s = ds[0]
    np.testing.assert_allclose(s["box"].numpy(), [0, 0, 0.5, 0.5])
    np.testing.assert_allclose(_box_of(s["mask"]), [0, 0, S // 2, S // 2], atol=1)


def test_mirror_boxes_follows_the_mirrored_pixels():
    """A box drawn as pixels, mirrored with the image, is the box mirror_boxes gives; `which`
    mirrors only its rows; numpy boxes work; the input is left as it is."""
    from sgfast.data.boxes import mirror_boxes

    side = 20
    boxes = torch.tensor([[2, 3, 5, 7], [0, 0, 20, 4], [11, 9, 9, 1]], dtype=torch.float32)
    for b, m in zip(boxes, mirror_boxes(boxes / side)):
        x, y, w, h = b.int().tolist()
        canvas = torch.zeros(side, side)
        canvas[y:y + h, x:x + w] = 1
        cols = canvas.flip(-1).amax(0).nonzero().view(-1)
        expect = torch.tensor([cols[0], y, cols[-1] - cols[0] + 1, h], dtype=torch.float32) / side
        torch.testing.assert_close(m, expect)
    before = boxes.clone()
    which = torch.tensor([True, False, True])
    out = mirror_boxes(boxes, which)
    assert torch.equal(boxes, before)
    assert torch.equal(out[1], boxes[1]) and not torch.equal(out[0], boxes[0])
    torch.testing.assert_close(mirror_boxes(mirror_boxes(boxes / side)), boxes / side)
    nb = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    np.testing.assert_allclose(mirror_boxes(nb), [0.6, 0.2, 0.3, 0.4], rtol=1e-6)
    assert nb[0] == np.float32(0.1)


def test_mirror_rows_mirrors_only_the_chosen_samples():
    """Each selected sample equals its own horizontal mirror, column by column; the others and the
    inputs are unchanged; maps of any rank [B, ..., W] work."""
    from sgfast.data.boxes import mirror_rows

    g = torch.Generator().manual_seed(0)
    images, masks = torch.rand(3, 3, 4, 5, generator=g), torch.rand(3, 6, generator=g)
    which = torch.tensor([True, False, True])
    before = images.clone()
    out_i, out_m = mirror_rows(which, images, masks)
    assert torch.equal(images, before)
    for b in range(3):
        for col in range(5):
            src = 4 - col if which[b] else col
            assert torch.equal(out_i[b, ..., col], images[b, ..., src])
        for col in range(6):
            assert out_m[b, col] == masks[b, 5 - col if which[b] else col]
