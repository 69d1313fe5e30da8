#!/usr/bin/env python3
"""`make gpu-check`: what the first GPU must run before anything else, in one command.

On a machine with a GPU, in under 8 minutes:
  1. build     the extension with its CUDA kernels (SGFAST_FORCE_CUDA=1, this GPU's architecture only)
  2. kernels   the build has CUDA kernels, of torch's CUDA major version
  3. tests     every CUDA test: tests/ -k cuda (CPU vs CUDA forward and backward in float32/float64 at
               small and 1024 px, non-contiguous inputs, a side stream, 70,000-image batches, each
               backward twice bitwise, no host sync in a DDPG update or a painting step, ...)
  4. sanitizer compute-sanitizer memcheck and racecheck on one small forward and backward of every op
  5. ddpg      DDPG updates/s at the paper config, fused vs eager ops (and the exact renderer,
               render_strokes, where the agent has it)
  6. paint     batch painting images/s (the shipped sg agent, the bundled birds)
  7. ops       every op on CUDA: eager reference, torch.compile of it, sgfast (paper shapes); the
               torch.compile columns are left out for the ops reached after the budget
and writes the figures, with the GPU named, into benchmarks/RESULTS.md (a block per device, replaced
on the next run on the same device; other blocks are left alone).

Without a GPU it runs what the CPU can (the CUDA kernels' CPU twins, the host-sync tests, small CPU
figures of the same benchmarks, marked as such) and says what it skipped; its figures go to the
RESULTS.md block of the CPU, never over a GPU's.

    python benchmarks/gpu_check.py [--quick] [--results FILE] [--budget SECONDS] [--only STAGE,...]

Exit status 1 when a stage failed (a skipped stage is no failure). Each stage runs in a subprocess
with a time limit; a stage that would start after the budget is skipped, saying so.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "RESULTS.md")
SANITIZER = os.environ.get("SGFAST_COMPUTE_SANITIZER", "/usr/local/cuda/bin/compute-sanitizer")
STAGES = ("build", "kernels", "tests", "sanitizer", "ddpg", "paint", "ops")  # ops last: torch.compile is slow
BUDGET_S = 480  # the 8 minutes


# ---------------------------------------------------------------------------------------------
# The driver: stages in subprocesses, a report, RESULTS.md.

class Report:
    def __init__(self):
        self.rows = []      # (stage, status, seconds, detail)
        self.figures = {}   # stage -> markdown lines

    def add(self, stage, status, seconds, detail):
        self.rows.append((stage, status, seconds, detail))
        print(f"gpu-check: {stage:9s} {status:4s} {seconds:6.1f}s  {detail}", flush=True)

    @property
    def failed(self):
        return [r for r in self.rows if r[1] == "FAIL"]


def run(cmd, timeout, env=None, cwd=ROOT):
    """(returncode, output) of cmd; returncode None when it ran past timeout."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out


def tail(text, lines=15):
    return "\n".join(text.strip().splitlines()[-lines:])


def probe_python(python):
    """(torch version, CUDA available) of an interpreter, or None."""
    code = "import torch; print(torch.__version__, torch.cuda.is_available())"
    rc, out = run([python, "-c", code], 120)
    if rc != 0 or not out.strip():
        return None
    version, cuda = out.strip().splitlines()[-1].split()
    return version, cuda == "True"


def pick_python():
    """This interpreter, or the first of .venv/bin/python and python3 whose torch sees a GPU when
    this one's does not (a CPU torch in .venv on a GPU machine)."""
    own = probe_python(sys.executable)
    if own and own[1]:
        return sys.executable
    for cand in (os.path.join(ROOT, ".venv", "bin", "python"), shutil.which("python3")):
        if cand and os.path.exists(cand) and os.path.realpath(cand) != os.path.realpath(sys.executable):
            found = probe_python(cand)
            if found and found[1]:
                return cand
    return sys.executable


def environment():
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
           "gpu": None, "cc": None, "cpu": cpu_name(), "cores": os.cpu_count(), "commit": git_commit(),
           "nvcc": None, "sanitizer": SANITIZER if os.path.exists(SANITIZER) else None, "ninja": bool(ninja())}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cc"] = "%d.%d" % torch.cuda.get_device_capability(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30)
    nvcc = nvcc_path()
    if nvcc:
        rc, out = run([nvcc, "--version"], 30)
        m = re.search(r"release ([\d.]+)", out or "")
        env["nvcc"] = f"{nvcc} ({m.group(1)})" if m else nvcc
    return env


def ninja():
    try:
        from torch.utils.cpp_extension import is_ninja_available

        return is_ninja_available()
    except Exception:  # noqa: BLE001
        return shutil.which("ninja") is not None


def nvcc_path():
    try:
        from torch.utils.cpp_extension import CUDA_HOME
    except Exception:  # noqa: BLE001
        CUDA_HOME = None
    for cand in ([os.path.join(CUDA_HOME, "bin", "nvcc")] if CUDA_HOME else []) + ["/usr/local/cuda/bin/nvcc",
                                                                                 shutil.which("nvcc") or ""]:
        if cand and os.path.exists(cand):
            return cand
    return None


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit():
    rc, out = run(["git", "rev-parse", "--short", "HEAD"], 10)
    dirty = run(["git", "status", "--porcelain", "--untracked-files=no"], 10)[1].strip()
    return (out.strip() + (" (+ uncommitted changes)" if dirty else "")) if rc == 0 else "unknown"


def worker(stage, args, timeout, budget):
    """Runs `gpu_check.py --worker stage` in a fresh interpreter (it imports the extension just
    built); returns (returncode, output, result dict or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        out_json = os.path.join(tmp, "result.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", stage, "--json", out_json,
               "--budget", str(budget)]
        if args.quick:
            cmd.append("--quick")
        rc, out = run(cmd, timeout)
        result = None
        if os.path.exists(out_json):
            with open(out_json) as f:
                result = json.load(f)
        return rc, out, result


def stage_build(env, args):
    if not env["gpu"]:
        return "SKIP", "no GPU: the CUDA kernels are not built here (the CPU build in place is used)"
    if not env["nvcc"]:
        return "FAIL", "a GPU but no nvcc (CUDA_HOME): the CUDA kernels cannot be built"
    build_env = dict(os.environ, SGFAST_FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=env["cc"],
                     MAX_JOBS=str(os.cpu_count() or 4))
    for so in [f for f in os.listdir(os.path.join(ROOT, "sgfast")) if f.startswith("_C") and f.endswith(".so")]:
        os.remove(os.path.join(ROOT, "sgfast", so))
    rc, out = run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], args.build_timeout, env=build_env)
    how = f"sm_{env['cc'].replace('.', '')}, {'ninja' if env['ninja'] else 'no ninja: one file at a time'}"
    if rc is None:
        return "FAIL", f"build ran past {args.build_timeout}s ({how})\n{tail(out)}"
    if rc != 0:
        return "FAIL", f"build failed ({how})\n{tail(out, 30)}"
    return "PASS", f"built with CUDA kernels ({how})"


KERNELS_CODE = """
import json, torch, sgfast
from sgfast.ops import _ext
print(json.dumps({"has_ext": _ext.HAS_EXT, "error": str(_ext.EXT_ERROR) if _ext.EXT_ERROR else None,
                  "cudart": _ext.CUDA_RUNTIME_VERSION, "mismatch": _ext.cuda_version_mismatch(),
                  "torch_cuda": torch.version.cuda}))
"""


def stage_kernels(env, args, report):
    rc, out = run([sys.executable, "-c", KERNELS_CODE], 120)
    if rc != 0:
        return "FAIL", f"importing sgfast failed\n{tail(out)}"
    info = json.loads(out.strip().splitlines()[-1])
    if not info["has_ext"]:
        return "FAIL", f"sgfast._C does not load: {info['error']}"
    v = info["cudart"]
    if not env["gpu"]:
        what = f"CUDA {v // 1000}.{v % 1000 // 10} kernels" if v else "a CPU-only build"
        return "SKIP", f"no GPU: the extension loads ({what}); CUDA kernels not checked"
    if v == 0:
        return "FAIL", "a GPU is present but sgfast._C has no CUDA kernels (rebuild: SGFAST_FORCE_CUDA=1 make build)"
    if info["mismatch"]:
        return "FAIL", info["mismatch"]
    regs = kernel_resources(env)
    if regs:
        report.figures["kernels"] = regs
    return "PASS", f"CUDA kernels built with CUDA {v // 1000}.{v % 1000 // 10}, torch uses CUDA {info['torch_cuda']}"


def kernel_resources(env):
    """Registers, stack and shared memory of every sgfast kernel (cuobjdump --dump-resource-usage of
    the build), as markdown lines; [] when cuobjdump is not there."""
    cuobjdump = os.path.join(os.path.dirname(env["nvcc"].split(" ")[0]), "cuobjdump") if env["nvcc"] else None
    sos = [os.path.join(ROOT, "sgfast", f) for f in os.listdir(os.path.join(ROOT, "sgfast"))
           if f.startswith("_C") and f.endswith(".so")]
    if not cuobjdump or not os.path.exists(cuobjdump) or not sos:
        return []
    rc, out = run([cuobjdump, "--dump-resource-usage", sos[0]], 60)
    if rc != 0:
        return []
    rows, name = [], None
    for line in out.splitlines():
        m = re.search(r"Function (\S+):", line)
        if m:
            name = m.group(1)
            continue
        m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", line)
        if m and name and "sgfast" in name:
            rows.append((name, *m.groups()))
            name = None
    if shutil.which("c++filt") and rows:
        demangled = run(["c++filt"] + [r[0] for r in rows], 30)[1].splitlines()
        if len(demangled) == len(rows):
            rows = [(d,) + r[1:] for d, r in zip(demangled, rows)]
    short = lambda n: re.sub(r"^void |sgfast::", "", n.replace("(anonymous namespace)::", "").split("(")[0])  # noqa: E731
    lines = [f"Kernel resources (cuobjdump --dump-resource-usage, sm {env['cc']}); 256 threads per block unless the "
             "kernel says otherwise; 64 registers or fewer allow 50% occupancy:", "",
             "| kernel | registers | stack B | local B | shared B |", "|---|---|---|---|---|"]
    lines += [f"| `{short(n)}` | {r} | {st} | {lo} | {sh} |" for n, r, st, sh, lo in sorted(rows)]
    return lines


def stage_tests(env, args):
    if subprocess.run([sys.executable, "-c", "import pytest"], capture_output=True).returncode != 0:
        return "FAIL", "pytest is not installed for this interpreter"
    with tempfile.TemporaryDirectory() as tmp:
        xml = os.path.join(tmp, "junit.xml")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", "-rfE"]
        if env["gpu"]:
            # Every CUDA test: the device-parametrised [cuda] cases, the needs_cuda tests (-k matches
            # markers too), the CUDA kernels' tests and their CPU twins.
            cmd += ["tests", "-k", "cuda"]
            what = "every CUDA test (tests/ -k cuda)"
        elif args.quick:
            cmd += ["tests/test_cuda_twins.py", "-k", "launch or loops or nonfinite"]
            what = "quick: a subset of the CUDA kernels' CPU twins"
        else:
            cmd += ["tests/test_cuda_twins.py", "tests/test_host_syncs.py", "tests/test_cuda_kernels.py"]
            what = "the CUDA kernels' CPU twins and the host-sync tests (the GPU ones skip)"
        rc, out = run(cmd, args.tests_timeout)
        counts = junit_counts(xml)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing ran"
    if rc is None:
        return "FAIL", f"{what}: ran past {args.tests_timeout}s ({summary})\n{tail(out)}"
    if rc != 0:
        return "FAIL", f"{what}: {summary}\n{tail(out, 30)}"
    note = "" if env["gpu"] else f"; no GPU: {counts.get('skipped', 0)} GPU tests skipped"
    return "PASS", f"{what}: {summary}{note}"


def junit_counts(path):
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    if not os.path.exists(path):
        return counts
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    total = int(suite.get("tests", 0))
    counts["failed"], counts["errors"], counts["skipped"] = (int(suite.get(k, 0)) for k in ("failures", "errors",
                                                                                          "skipped"))
    counts["passed"] = total - counts["failed"] - counts["errors"] - counts["skipped"]
    return counts


def stage_sanitizer(env, args):
    if not env["gpu"]:
        return "SKIP", "no GPU: compute-sanitizer not run"
    if not env["sanitizer"]:
        return "SKIP", f"compute-sanitizer not found at {SANITIZER}"
    case = [sys.executable, os.path.abspath(__file__), "--worker", "sanitizer_case"]
    # Every tensor its own cudaMalloc, so an access past its end is past an allocation's end.
    case_env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1")
    notes = []
    for tool, extra in (("memcheck", ["--leak-check", "no"]), ("racecheck", ["--racecheck-report", "analysis"])):
        # Only sgfast's kernels are instrumented (their names hold the namespace): torch's stay fast.
        base = [SANITIZER, "--tool", tool, "--error-exitcode", "3", *extra]
        rc, out = run(base + ["--kernel-name", "kns=sgfast"] + case, args.sanitizer_timeout, env=case_env)
        if rc not in (None, 0, 3) and "ERROR SUMMARY" not in (out or ""):  # e.g. no --kernel-name: check all
            notes.append(f"{tool} without the kernel filter")
            rc, out = run(base + case, args.sanitizer_timeout, env=case_env)
        if rc is None:
            return "FAIL", f"{tool}: ran past {args.sanitizer_timeout}s\n{tail(out)}"
        m = re.search(r"ERROR SUMMARY: (\d+) error", out or "")
        errors = int(m.group(1)) if m else None
        if rc != 0 or errors:
            return "FAIL", f"{tool}: {errors if errors is not None else '?'} errors (exit {rc})\n{tail(out, 40)}"
        if "sanitizer case: done" not in out:
            return "FAIL", f"{tool}: the case did not finish\n{tail(out)}"
        notes.append(f"{tool} 0 errors")
    return "PASS", "every op's forward and backward, small shapes: " + ", ".join(notes)


def stage_bench(stage, env, args, report, remaining):
    timeout = max(90.0, min(args.bench_timeout, remaining + 60.0))
    rc, out, result = worker(stage, args, timeout, max(0.0, remaining))
    if rc is None:
        return "FAIL", f"ran past {timeout:.0f}s\n{tail(out)}"
    if rc != 0 or result is None:
        return "FAIL", f"worker failed (exit {rc})\n{tail(out, 30)}"
    report.figures[stage] = result["lines"]
    for line in result["lines"]:
        print("    " + line)
    return result.get("status", "PASS"), result["summary"]


def write_results(path, env, report, args):
    device = env["gpu"] or f"CPU ({env['cpu']}, {env['cores']} cores)"
    key = "cuda:" + re.sub(r"[^a-z0-9]+", "-", env["gpu"].lower()).strip("-") if env["gpu"] else "cpu"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"<!-- gpu-check:{key}:begin (written by benchmarks/gpu_check.py; replaced by the next run "
             f"on this device) -->",
             f"## `make gpu-check` on {device}",
             "",
             f"{when}, commit {env['commit']}; torch {env['torch']} (CUDA {env['torch_cuda']}), Python "
             f"{env['python']}" + (f"; {env['gpu']} (sm {env['cc']}, {env.get('gpu_memory_gib')} GiB), "
                                   f"nvcc {env['nvcc']}" if env["gpu"] else "") + ".",
             ""]
    if not env["gpu"]:
        lines += ["**No GPU: CPU figures of the CPU-feasible parts" + (" at small quick-mode shapes, for checking the "
                  "script, not for comparison" if args.quick else "") + ".** GPU figures are pending.", ""]
    lines += ["| stage | result | s | detail |", "|---|---|---|---|"]
    for stage, status, secs, detail in report.rows:
        lines.append(f"| {stage} | {status} | {secs:.0f} | {detail.splitlines()[0] if detail else ''} |")
    for stage in STAGES:
        if stage in report.figures:
            lines += [""] + report.figures[stage]
    lines.append(f"<!-- gpu-check:{key}:end -->")
    block = "\n".join(lines) + "\n"
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    pattern = re.compile(rf"<!-- gpu-check:{re.escape(key)}:begin.*?<!-- gpu-check:{re.escape(key)}:end -->\n?",
                         re.S)
    if pattern.search(text):
        text = pattern.sub(lambda m: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)
    return key


def main_driver(args):
    if not args.no_reexec:
        py = pick_python()
        if py != sys.executable:
            print(f"gpu-check: {py} sees the GPU; running there", flush=True)
            os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:], "--no-reexec"])
    t_start = time.monotonic()
    env = environment()
    if not env["gpu"]:
        args.quick = args.quick or not args.full
    print(f"gpu-check: {'GPU ' + env['gpu'] if env['gpu'] else 'no GPU (CPU ' + env['cpu'] + ')'}; torch "
          f"{env['torch']} CUDA {env['torch_cuda']}; budget {args.budget}s; "
          f"{'quick' if args.quick else 'full'} mode", flush=True)
    only = set(args.only.split(",")) if args.only else set(STAGES)
    report = Report()
    blocked = None  # the build or the kernel check failed: the rest would test an old or CPU-only build
    for stage in STAGES:
        if stage not in only:
            continue
        spent = time.monotonic() - t_start
        if spent > args.budget:
            report.add(stage, "SKIP", 0.0, f"time budget ({args.budget}s) spent")
            continue
        if blocked:
            report.add(stage, "SKIP", 0.0, f"needs the CUDA build: {blocked} failed")
            continue
        t0 = time.monotonic()
        try:
            if stage == "build":
                status, detail = stage_build(env, args)
            elif stage == "kernels":
                status, detail = stage_kernels(env, args, report)
            elif stage == "tests":
                status, detail = stage_tests(env, args)
            elif stage == "sanitizer":
                status, detail = stage_sanitizer(env, args)
            else:
                status, detail = stage_bench(stage, env, args, report, args.budget - spent)
        except Exception as exc:  # noqa: BLE001 - a stage's own bug is its failure, the others still run
            status, detail = "FAIL", f"{type(exc).__name__}: {exc}"
        report.add(stage, status, time.monotonic() - t0, detail)
        if stage in ("build", "kernels") and status == "FAIL":
            blocked = stage
    total = time.monotonic() - t_start
    path = args.results or RESULTS
    key = write_results(path, env, report, args)
    skipped = [r for r in report.rows if r[1] == "SKIP"]
    print(f"gpu-check: {len(report.rows) - len(report.failed) - len(skipped)} passed, {len(report.failed)} failed, "
          f"{len(skipped)} skipped in {total:.0f}s; figures in {os.path.relpath(path, ROOT)} (block {key})")
    for stage, _, _, detail in skipped:
        print(f"gpu-check: skipped {stage}: {detail.splitlines()[0]}")
    for stage, _, _, detail in report.failed:
        print(f"gpu-check: FAILED {stage}:\n{detail}")
    if total > BUDGET_S and env["gpu"]:
        print(f"gpu-check: took {total:.0f}s, over the issue's {BUDGET_S}s")
    return 1 if report.failed else 0


# ---------------------------------------------------------------------------------------------
# Workers (run in a fresh interpreter, after the build).

def sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, reps, warmup=1):
    """(median, min) seconds of fn() over reps calls after warmup calls, synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def worker_ops(device, quick, budget=float("inf")):
    """Every op: eager reference, torch.compile of it, sgfast; forward and forward + backward.
    torch.compile is left out for the ops reached after `budget` seconds."""
    import torch

    t_start = time.monotonic()

    import sgfast.ops as fused
    import sgfast.reference as eager

    gpu = device.type == "cuda"
    B, S = (2, 16) if quick else (96, 128)
    reps = 2 if quick else 10
    gen = torch.Generator().manual_seed(0)
    rand = lambda *s: torch.rand(*s, generator=gen).to(device)  # noqa: E731
    boxes = torch.cat([torch.rand(B, 2, generator=gen) * 0.4, torch.rand(B, 2, generator=gen) * 0.4 + 0.3], 1).to(device)
    layer = torch.tensor([False, False, True, True, True], device=device)
    canvas, alpha, color, mask = rand(B, 3, S, S), rand(B, 5, S, S), rand(B, 5, 3), rand(B, 1, S, S)
    x9, m9 = rand(B, 9, S, S), (rand(B, 1, S, S) > 0.3).float()
    target, c0, c1, gbp = rand(B, 3, S, S), rand(B, 3, S, S), rand(B, 3, S, S), rand(B, 1, S, S)
    cases = {  # name: (function of the op module, differentiable inputs, the other arguments)
        "composite": (lambda m, a, b, c: m.composite(a, b, c, mask, layer), [canvas, alpha, color]),
        "aligned_crop": (lambda m, a: m.aligned_crop(a, boxes, S, m9), [x9]),
        "focus_reward": (lambda m, a, b: m.focus_reward(target, a, b, gbp, boxes, S), [c0, c1]),
    }
    compile_ok = gpu or not quick
    lines = [f"Ops on {device_label(device)}: B = {B}, {S} x {S}" + (" (paper shapes)" if not quick else
             " (quick-mode shapes)") + f"; median (min) ms of {reps} calls after warm-up; torch.compile warm-up "
             "(compilation) not timed.", "",
             "| op | mode | sgfast | eager | torch.compile | eager / sgfast | compile / sgfast |",
             "|---|---|---|---|---|---|---|"]
    worst, late = None, []
    for name, (call, leaves) in cases.items():
        impls = {"sgfast": fused, "eager": eager}
        compiled = {}
        compile_ok_here = True
        for mode in ("forward", "fwd+bwd"):
            row = {}
            for impl in ("sgfast", "eager", "compile"):
                if impl == "compile" and not compile_ok:
                    continue
                if impl == "compile" and "fn" not in compiled and time.monotonic() - t_start > budget:
                    late.append(name)
                    compile_ok_here = False
                    continue
                if impl == "compile" and not compile_ok_here:
                    continue
                if impl == "compile":
                    if "fn" not in compiled:
                        compiled["fn"] = torch.compile(lambda *a, _c=call: _c(eager, *a), dynamic=False)
                    fn = compiled["fn"]
                else:
                    fn = (lambda *a, _c=call, _m=impls[impl]: _c(_m, *a))
                if mode == "forward":
                    def run(fn=fn):
                        with torch.no_grad():
                            return fn(*leaves)
                else:
                    ls = [t.detach().clone().requires_grad_() for t in leaves]
                    out = fn(*ls)
                    go = torch.rand(out.shape, generator=gen).to(device)

                    def run(fn=fn, ls=ls, go=go):
                        return torch.autograd.grad(fn(*ls), ls, go)
                row[impl] = timed(run, device, reps, warmup=2 if impl == "compile" else 1)
            # The numbers agree (forward) before they are compared.
            with torch.no_grad():
                ref, got = call(eager, *leaves), call(fused, *leaves)
            err = (got - ref).abs().max().item()
            worst = err if worst is None else max(worst, err)
            ms = {k: f"{v[0] * 1e3:.2f} ({v[1] * 1e3:.2f})" for k, v in row.items()}
            ratio = lambda k: f"{row[k][0] / row['sgfast'][0]:.1f}x" if k in row else "-"  # noqa: E731
            lines.append(f"| {name} | {mode} | {ms['sgfast']} | {ms['eager']} | {ms.get('compile', 'not run')} | "
                         f"{ratio('eager')} | {ratio('compile')} |")
    if late:
        lines.append(f"(torch.compile not run for {', '.join(late)}: the check's time budget was spent)")
    # rasterize_strokes (forward only): sgfast ltp / exact; the eager ltp reference on a subset.
    n, n_exact, n_eager = (32, 2, 2) if quick else (4096, 64, 16)
    params = torch.rand(n, 10, generator=gen).to(device)
    t_ltp = timed(lambda: fused.rasterize_strokes(params, 128, "ltp"), device, reps)
    sub = params[:n_exact]
    t_exact = timed(lambda: fused.rasterize_strokes(sub, 128, "exact", 4), device, max(2, reps // 3))
    t_eager = timed(lambda: eager.rasterize_strokes(params[:n_eager], 128, "ltp"), device, 2)
    lines += ["", f"rasterize_strokes at 128 px on {device_label(device)} (forward only; torch.compile of the "
              "eager reference not run: its 100-disc loop takes minutes to compile): strokes/s", "",
              "| impl | strokes timed | strokes/s |", "|---|---|---|",
              f"| sgfast ltp | {n} | {n / t_ltp[0]:.0f} |",
              f"| sgfast exact, 4 x 4 samples | {len(sub)} | {len(sub) / t_exact[0]:.0f} |",
              f"| eager reference ltp | {n_eager} | {n_eager / t_eager[0]:.1f} |"]
    if has_kernel("render_strokes", device) and hasattr(eager, "render_strokes"):
        strokes = torch.rand(B, 5, 13, generator=gen).to(device)
        row = {impl: timed(lambda m=m: m.render_strokes(canvas, strokes, mask, layer), device, max(2, reps // 3))
               for impl, m in (("sgfast", fused), ("eager", eager))}
        lines += ["", f"render_strokes (the exact renderer fused with compositing), B = {B}, {S} x {S}, 5 strokes, "
                  f"forward: sgfast {row['sgfast'][0] * 1e3:.2f} ms, eager {row['eager'][0] * 1e3:.2f} ms "
                  f"({row['eager'][0] / row['sgfast'][0]:.1f}x)"]
    return {"lines": lines, "summary": f"{len(cases)} ops + rasterize timed on {device_label(device)}; largest "
            f"sgfast-vs-eager forward difference {worst:.1e}"}


def has_kernel(op, device):
    """sgfast.ops has `op` and the extension a kernel for it on `device` (an op being added may have
    its CPU kernel before its CUDA one)."""
    import torch

    import sgfast.ops

    if not hasattr(sgfast.ops, op):
        return False
    key = "CUDA" if device.type == "cuda" else "CPU"
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(f"sgfast::{op}", key)
    except Exception:  # noqa: BLE001 - a torch without this query: try it
        return True


def device_label(device):
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def agent_setup(ops_name, device, config, painter_kind="neural"):
    """A DDPG agent of `config` (random weights: timing does not depend on them) with a replay
    memory of a few transitions on `device`."""
    import dataclasses

    import torch

    from sgfast.agent import env as env_module
    from sgfast.agent.config import get_config
    from sgfast.agent.data import synthetic_data
    from sgfast.agent.ddpg import DDPG
    from sgfast.agent.replay import ReplayMemory
    from sgfast.backend import get_ops
    from sgfast.models.renderer import Renderer
    from sgfast.strokes import STROKE_PARAMS

    torch.manual_seed(0)
    cfg = dataclasses.replace(get_config(config))
    ops = get_ops(ops_name, "sg")
    if painter_kind == "exact":
        painter = env_module.ExactPainter(ops, "sg", cfg.strokes_bg, cfg.size)
    else:
        renderer = Renderer(cfg.renderer).to(device).eval().requires_grad_(False)
        painter = env_module.Painter(renderer, ops, "sg", cfg.strokes_bg)
    data = synthetic_data(max(16, cfg.batch_size // 4), cfg.size, seed=0, device=device)
    agent = DDPG(cfg, "sg", painter, ops, data, device)
    gen = torch.Generator().manual_seed(0)
    env = env_module.PaintEnv(data, painter, cfg.max_step, cfg.env_batch, data.train_ids, gen)
    replay = ReplayMemory(cfg.env_batch * 4, cfg.size, cfg.strokes * STROKE_PARAMS, device)
    env.reset()
    for t in range(2):
        before, after, _ = env.step(agent.act(env.canvas, env.targets, t))
        action = torch.rand(cfg.env_batch, cfg.strokes * STROKE_PARAMS, generator=gen).to(device)
        replay.append(before, after, action, t, env.ids, env.flip)
    return cfg, agent, replay, gen


def worker_ddpg(device, quick):
    from sgfast.agent import env as env_module

    config = "smoke" if quick else "paper"
    reps, warmup = (1, 0) if quick else (5, 2)
    rows, notes = {}, []
    variants = [("fused", "neural"), ("eager", "neural")]
    if hasattr(env_module, "ExactPainter"):
        variants.append(("fused", "exact"))
    else:
        notes.append("exact renderer: not timed (render_strokes is not wired into the agent yet)")
    for ops_name, kind in variants:
        try:
            cfg, agent, replay, gen = agent_setup(ops_name, device, config, kind)
            batch = replay.sample(cfg.batch_size, gen)
            med, best = timed(lambda: agent.update(batch), device, reps, warmup=warmup)
        except Exception as exc:  # noqa: BLE001 - e.g. the exact painter under construction
            if kind == "neural":
                raise
            notes.append(f"{ops_name}/{kind}: not timed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
            continue
        rows[(ops_name, kind)] = (1 / med, 1 / best)
    lines = [f"DDPG updates/s, sg mode, `{config}` config (batch {cfg.batch_size}, {cfg.size} px, K = {cfg.strokes}),"
             f" {device_label(device)}; median (best) of {reps} updates after {warmup} warm-up:", "",
             "| ops | renderer | updates/s | vs eager |", "|---|---|---|---|"]
    base = rows.get(("eager", "neural"), (None,))[0]
    for (ops_name, kind), (med, best) in rows.items():
        vs = f"{med / base:.2f}x" if base else "-"
        lines.append(f"| {ops_name} | {kind} | {med:.2f} ({best:.2f}) | {vs} |")
    lines += [f"({n})" for n in notes]
    fused = rows.get(("fused", "neural"), (0,))[0]
    return {"lines": lines, "summary": f"fused {fused:.2f} updates/s" + (f", {fused / base:.2f}x eager" if base else "")
            + ("; " + "; ".join(notes) if notes else "")}


def worker_paint(device, quick):
    import glob

    import torch

    from sgfast.data.imageio import read_image_rgb
    from sgfast.data.tensor_images import resize_square
    from sgfast.paint import load_models, semantics
    from sgfast.paint.agent_painter import paint_batch

    paths = sorted(glob.glob(os.path.join(ROOT, "sgfast/assets/samples/birds/images/*/*.jpg")))
    masks = [p.replace("/images/", "/segmentations/")[:-4] + ".png" for p in paths]
    n, bs = (1, 1) if quick else (64, 32)
    idx = [i % len(paths) for i in range(n)]
    imgs = [read_image_rgb(paths[i]) for i in idx]
    rows = []
    for label, ops, size in (("batched, fused", "fused", bs), ("batched, eager", "eager", bs),
                             ("one at a time, fused", "fused", 1)):
        if quick and label.startswith("one"):
            continue
        models = load_models("sg", device=str(device), ops=ops, need_segmenter=False)
        steps = 1 if quick else int(models.meta["max_step"])
        sem = semantics(models, imgs, [masks[i] for i in idx])
        targets = torch.cat([resize_square(torch.from_numpy(im).permute(2, 0, 1)[None], models.size) for im in imgs])
        count = n if size > 1 else min(n, 8)

        def run(size=size, count=count):
            for s in range(0, count, size):
                paint_batch(models, targets[s:s + size], sem[s:s + size], steps, "none")
        med, _ = timed(run, device, 1 if quick else 2)
        rows.append((label, count / med))
    k = models.meta["strokes_bg"] + models.meta["strokes_fg"]
    lines = [f"Batch painting (shipped sg agent, {steps} steps x {k} strokes, bundled birds, batch {bs}, frames "
             f"none), {device_label(device)}:", "", "| pipeline | images/s |", "|---|---|"]
    lines += [f"| {label} | {ips:.1f} |" for label, ips in rows]
    return {"lines": lines, "summary": f"{rows[0][1]:.1f} images/s batched fused"}


def worker_sanitizer_case():
    """One small forward and backward of every op on the GPU (run under compute-sanitizer)."""
    import torch

    import sgfast.ops as fused

    dev = torch.device("cuda")
    g = torch.Generator().manual_seed(0)
    r = lambda *s, dtype=torch.float32: torch.rand(*s, generator=g, dtype=dtype).to(dev)  # noqa: E731
    for dtype in (torch.float32, torch.float64):
        B, S = 3, 19
        canvas, alpha, color = (r(*s, dtype=dtype).requires_grad_() for s in ((B, 3, S, S), (B, 20, S, S), (B, 20, 3)))
        mask, layer = r(B, 1, S, S, dtype=dtype), torch.arange(20, device=dev) >= 7
        torch.autograd.grad(fused.composite(canvas, alpha, color, mask, layer).sum(), [canvas, alpha, color])
        fused.composite_frames(canvas.detach(), alpha.detach(), color.detach(), mask, layer)
        boxes = torch.tensor([[0.1, 0.2, 0.5, 0.6], [-0.2, 0.3, 1.4, 0.5], [0.3, 0.3, 0.0, 0.2]], dtype=dtype).to(dev)
        x = r(B, 4, S, S + 2, dtype=dtype).requires_grad_()
        m = r(B, 1, S, S + 2, dtype=dtype)
        for size in ((7, 9), (40, 33)):
            torch.autograd.grad(fused.aligned_crop(x, boxes, size, m).sum(), [x])
            t, c0, c1 = (r(B, 4, S, S + 2, dtype=dtype).requires_grad_() for _ in range(3))
            gb = r(B, 1, S, S + 2, dtype=dtype)
            torch.autograd.grad(fused.focus_reward(t, c0, c1, gb, boxes, size).sum(), [t, c0, c1])
            torch.autograd.grad(fused.focus_distance(t, c0, gb, boxes, size).sum(), [c0])
        p = r(5, 10, dtype=dtype)
        fused.rasterize_strokes(p, 24, "ltp")
        fused.rasterize_strokes(p, 16, "exact", 2)
        if has_kernel("render_strokes", dev):
            cv = r(2, 3, 16, 16, dtype=dtype).requires_grad_()
            st = r(2, 4, 13, dtype=dtype).requires_grad_()
            torch.autograd.grad(fused.render_strokes(cv, st).sum(), [cv, st])
    torch.cuda.synchronize()
    print("sanitizer case: done", flush=True)


def main_worker(args):
    import torch

    if args.worker == "sanitizer_case":
        worker_sanitizer_case()
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(min(4, os.cpu_count() or 1))
    if args.worker == "ops":
        result = worker_ops(device, args.quick, args.budget)
    else:
        result = {"ddpg": worker_ddpg, "paint": worker_paint}[args.worker](device, args.quick)
    with open(args.json, "w") as f:
        json.dump(result, f)
    return 0


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small shapes and a test subset (the default without a GPU)")
    p.add_argument("--full", action="store_true", help="without a GPU: the full shapes on the CPU (slow)")
    p.add_argument("--results", default=None, help=f"the results file (default {os.path.relpath(RESULTS, ROOT)})")
    p.add_argument("--budget", type=float, default=BUDGET_S, help="seconds after which no new stage starts")
    p.add_argument("--only", default=None, help=f"comma-separated stages of {','.join(STAGES)}")
    p.add_argument("--build-timeout", type=float, default=300)
    p.add_argument("--tests-timeout", type=float, default=180)
    p.add_argument("--sanitizer-timeout", type=float, default=120)
    p.add_argument("--bench-timeout", type=float, default=150)
    p.add_argument("--no-reexec", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.only and not set(args.only.split(",")) <= set(STAGES):
        p.error(f"--only: stages are {','.join(STAGES)}")
    return args


if __name__ == "__main__":
    a = parse()
    sys.exit(main_worker(a) if a.worker else main_driver(a))
