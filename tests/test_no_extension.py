"""Without the compiled extension, sgfast still imports and every op says how to build it."""
import subprocess
import sys
import textwrap


def test_import_and_ops_without_extension():
    code = textwrap.dedent("""
        import sys
        sys.modules["sgfast._C"] = None  # makes `from sgfast import _C` raise ImportError
        import torch
        import sgfast
        from sgfast import ops, reference
        assert sgfast.HAS_EXT is False, "extension unexpectedly loaded"
        x = torch.rand(1, 3, 8, 8)
        calls = {
            "rasterize_strokes": lambda: ops.rasterize_strokes(torch.rand(2, 10), 8),
            "composite": lambda: ops.composite(x, torch.rand(1, 2, 8, 8), torch.rand(1, 2, 3)),
            "aligned_crop": lambda: ops.aligned_crop(x, torch.tensor([[0.1, 0.1, 0.5, 0.5]]), 4),
            "focus_distance": lambda: ops.focus_distance(x, x, x[:, :1], torch.tensor([[0.1, 0.1, 0.5, 0.5]]), 4),
        }
        for name, call in calls.items():
            try:
                call()
            except RuntimeError as exc:
                assert "pip install --no-build-isolation" in str(exc), (name, str(exc))
            else:
                raise AssertionError(name + " ran without the extension")
        # The eager references need no build.
        assert reference.rasterize_strokes(torch.rand(2, 10), 8).shape == (2, 8, 8)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
