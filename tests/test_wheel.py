"""The package as an outside user gets it: a wheel built from the checkout, installed into a fresh
venv (its dependencies from the declared metadata only), then run from a folder outside the checkout.
Slow (a venv and the dependencies, about a minute with pip's cache); CI runs it."""
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, **kwargs):
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    # --no-build-isolation: the extension compiles against the torch of this venv (its objects are
    # reused from the checkout's build folder when present).
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-build-isolation", "--no-deps", "-w", str(dist), ROOT])
    wheels = list(dist.glob("sgfast-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_holds_package_data_and_no_top_level_train(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "sgfast/weights/agent_sg_tiny.pt" in names
    assert "sgfast/weights/renderer_tiny.pt" in names
    assert any(n.startswith("sgfast/assets/samples/birds/images/") and n.endswith(".jpg") for n in names)
    assert "sgfast/train/agent.py" in names
    assert not any(n.startswith("train/") for n in names), "a top-level package named train"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    for dep in ("torch", "numpy", "opencv-python-headless", "tqdm", "tensorboard"):
        assert any(line.split()[1].startswith(dep) for line in requires), (dep, requires)


@pytest.mark.slow
def test_wheel_in_fresh_venv_paints_from_any_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # The same torch as here first (a CPU build where this one is), then the wheel: everything else
    # it needs must come from its declared dependencies.
    run(pip + [f"torch=={torch.__version__}"])
    run(pip + [str(wheel)])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    py = str(venv / "bin" / "python")
    where = run([py, "-c", "import sgfast, sgfast.train.agent, sgfast.resources as r;"
                 "print(sgfast.__file__); print(r.bundled_asset('samples', 'birds'))"], cwd=elsewhere, env=env)
    package_file, birds = where.stdout.split()
    assert str(venv) in package_file and ROOT not in package_file
    assert run([py, "-c", "import importlib.util; print(importlib.util.find_spec('train'))"],
               cwd=elsewhere, env=env).stdout.strip() == "None"
    image = sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(birds, "images")) for f in fs)[0]
    shutil.copy(image, elsewhere / "bird.jpg")
    run([shutil.which("sgfast", path=env["PATH"]), "paint", "bird.jpg", "--method", "agent", "--out", "painted",
         "--no-progress"],
        cwd=elsewhere, env=env)
    painted = list((elsewhere / "painted").rglob("*.png"))
    assert painted, os.listdir(elsewhere / "painted")
    # train-agent's default renderer comes from inside the package, whatever the folder.
    run([py, "-c", "from sgfast.agent.config import CONFIGS; from sgfast.train.agent import load_renderer_for;"
         "load_renderer_for(CONFIGS['tiny'], None, 'cpu')"], cwd=elsewhere, env=env)
