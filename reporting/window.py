"""The parts of one lent GPU window (``gpu_window.py``) and its report.

A window is short (about 15 minutes of device time, the machine's start included) and lent by chance,
so one command runs every GPU measurement the README asks for, in an order that makes the most of it,
and leaves every result under one folder. Each part is a command a user could type (benchmark.py,
train.py, compare.py, pytest) run in a subprocess with its output in ``logs/<part>.log``; what it
produced is read back from the files it wrote. After each part the report is written again
(``window.json``, ``window.md``), so a window cut short still leaves what it measured.

1. ``data``: the image folder decoded once into the cache every later run reads, and airbench's
   ``train.pt`` / ``test.pt`` written from it (``reporting/peer.py``);
2. ``benchmark``: benchmark.py's (b), the Lightning step against the bare step (and host syncs per
   step) at batch 512, and (f), the images/s of k = 1, 2, 4, 8 runs at once, which picks the zoo's k;
3. ``peer``: airbench94 on the same images and GPU;
4. ``speedrun``: train.py experiment=speedrun, its time-to-target target set from the peer's accuracy;
5. ``zoo``: train.py -m over every family, k runs at once on the GPU (joblib workers, device slots),
   stopped where it would overrun the budget; ``gpu_tests`` (pytest -m gpu) run beside it;
6. ``compare``: compare.py on the zoo's sweep dir (table and figures).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from core.files import write_json, write_text

from .benchmarking import best_k

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("data", "benchmark", "peer", "speedrun", "zoo", "gpu_tests", "compare")
TARGETS = {"lenet5": 0.7, "resnet20": 0.9}  # Lightning step / bare step at batch 512 on a GPU (issue 21)


class Window:
    """Runs the parts in order into ``out`` and keeps the report current. ``cfg``: gpu_window.yaml, resolved."""

    def __init__(self, cfg: dict, out: Path, command: str) -> None:
        self.cfg, self.out, self.start = cfg, out, time.perf_counter()
        # the parts run from the repository root
        self.cache, self.root = out / "data", str(Path(cfg["data_root"]).resolve())
        self.report = {"command": command, "started": datetime.datetime.now().isoformat(timespec="seconds"),
                       "device": cfg["device"], "data_root": cfg["data_root"], "settings": cfg, "machine": {},
                       "parts": {name: {"status": "pending"} for name in PARTS}}

    # running -----------------------------------------------------------------------------------
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def part(self, name: str, function) -> dict:
        """Run one part; whatever it raises is recorded as its failure, and the window goes on."""
        started = time.perf_counter()
        self.report["parts"][name] = {"status": "running"}
        try:
            result = function()
        except Exception as error:  # noqa: BLE001 -- one part's failure must not cost the window the others
            result = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        result["seconds"] = round(time.perf_counter() - started, 1)
        self.report["parts"][name] = result
        self.write()
        print(f"[window {self.elapsed():5.0f} s] {name}: {result['status']} in {result['seconds']} s"
              + (f" ({result.get('error') or result.get('reason')})" if result["status"] != "completed" else ""),
              flush=True)
        return result

    def start_command(self, name: str, argv: list[str], cwd: Path = ROOT, env: dict | None = None) -> subprocess.Popen:
        """``argv`` in its own process group (so that a cut-off stops its workers too), output in logs/<name>.log."""
        (self.out / "logs").mkdir(exist_ok=True)
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), environment.get("PYTHONPATH", "")) if p)
        with open(self.out / "logs" / f"{name}.log", "w") as log:  # the child keeps its own copy of the file
            process = subprocess.Popen(argv, cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        # what the report shows, run from the repository root
        process.command = " ".join(["python", *map(str, argv[1:])])
        return process

    def finish(self, process: subprocess.Popen, timeout: float) -> dict:
        """Wait for ``process`` at most ``timeout`` s, then stop its whole group (SIGTERM, then SIGKILL)."""
        try:
            code = process.wait(timeout=max(1.0, timeout))
            return {"returncode": code, "command": process.command, "timed_out": False}
        except subprocess.TimeoutExpired:
            for sent, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                try:
                    os.killpg(process.pid, sent)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            return {"returncode": process.returncode, "command": process.command, "timed_out": True}

    def command(self, name: str, argv: list[str], timeout: float, **kwargs) -> dict:
        done = self.finish(self.start_command(name, argv, **kwargs), timeout)
        status = "timed out" if done["timed_out"] else "completed" if done["returncode"] == 0 else "failed"
        error = "" if status == "completed" else f"exit {done['returncode']}: see logs/{name}.log"
        if status != "completed":
            lines = (self.out / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()
            error += f" ({lines[-1][:200]})" if lines else ""
        return {"status": status, "command": done["command"], **({"error": error} if error else {})}

    def write(self) -> None:
        self.report["elapsed_s"] = round(self.elapsed(), 1)
        write_json(self.out / "window.json", self.report)
        write_text(self.out / "window.md", markdown(self.report))

    # the parts ---------------------------------------------------------------------------------
    def run(self) -> dict:
        self.part("data", self.data)  # first: its decoding workers are forked, before this process touches CUDA
        self.report["machine"] = machine(self.cfg["device"])
        self.part("benchmark", self.benchmark)
        self.part("peer", self.peer)
        self.part("speedrun", self.speedrun)
        self.part("zoo", self.zoo)  # records gpu_tests too: they run beside it
        self.part("compare", self.compare)
        return self.report

    def data(self) -> dict:
        from core.hardware import usable_cores
        from datamodules import ImageFolderDataModule

        from .peer import write_airbench_data

        folder = ImageFolderDataModule(root=self.root, data_dir=str(self.cache), pipeline="tensor",
                                       num_workers=min(8, usable_cores()))
        # decoded once, into the cache that train.py's runs read (same root, same data_dir)
        train, _, test = folder.load()
        written = write_airbench_data(self.out / "peer" / "cifar10",
                                      {"train": (train.images, train.targets), "test": (test.images, test.targets)},
                                      folder.classes)
        return {"status": "completed", "train_images": len(train), "test_images": len(test), "classes": folder.classes,
                "airbench_files": [str(p.relative_to(self.out)) for p in written]}

    def benchmark(self) -> dict:
        folder = self.out / "benchmark"
        argv = [sys.executable, "benchmark.py", f"device={self.cfg['device']}", f"report={folder / 'benchmark.md'}",
                f"hydra.run.dir={folder}", *self.cfg["benchmark"]["overrides"]]
        result = self.command("benchmark", argv, self.cfg["benchmark"]["timeout_s"])
        path = folder / "benchmark.json"
        if not path.is_file():
            return result
        bench = json.loads(path.read_text())
        rows = [{"model": r["model"], "bare_img_s": r["bare_img_s"], "lightning_img_s": r["lightning_img_s"],
                 "ratio": r["lightning_img_s"] / r["bare_img_s"], "target": TARGETS.get(r["model"]),
                 "syncs_per_step": r.get("lightning_syncs_per_step")} for r in bench["paths"]["rows"]]
        packed = bench.get("packing")
        return {**result, "batch_size": bench["paths"]["batch_size"], "variant": bench["paths"]["variant"],
                "ratio": rows, "packing": packed, "best_k": best_k(packed) if packed else None}

    def peer(self) -> dict:
        import importlib.util

        if self.cfg["device"] != "cuda":
            return {"status": "skipped",
                    "reason": "airbench94 runs on CUDA only (it puts its data and network on the GPU)"}
        if importlib.util.find_spec("airbench") is None:
            return {"status": "skipped",
                    "reason": "airbench is not installed here: carry its wheel (README 'The GPU path')"}
        from importlib import metadata

        from .peer import command, parse

        result = self.command("peer", [sys.executable, "-c", command(self.cfg["peer"]["runs"])],
                              self.cfg["peer"]["timeout_s"],
                              cwd=self.out / "peer")  # airbench reads cifar10/ under its working directory
        if result["status"] == "completed":
            try:
                version = metadata.version("airbench")
            except metadata.PackageNotFoundError:  # importable without its metadata (a source folder on the path)
                version = None
            result.update(parse((self.out / "logs" / "peer.log").read_text()), airbench=version,
                          train_images=self.report["parts"]["data"].get("train_images"),
                          test_images=self.report["parts"]["data"].get("test_images"))
        return result

    def target(self) -> tuple[float, str]:
        """The speedrun's target and where it comes from."""
        chosen, peer = self.cfg["speedrun"]["target"], self.report["parts"]["peer"]
        if isinstance(chosen, (int, float)):
            return float(chosen), "speedrun.target"
        key = {"peer_tta": "tta_acc", "peer": "acc"}[chosen]
        if peer.get("status") == "completed" and key in peer:
            return (round(peer[key]["mean"], 4),
                    f"the peer's mean test accuracy {'with' if key == 'tta_acc' else 'without'} "
                    "its test-time augmentation")
        return float(self.cfg["speedrun"]["fallback"]), "speedrun.fallback (the peer did not run)"

    def speedrun(self) -> dict:
        target, source = self.target()
        folder = self.out / "speedrun"
        argv = [sys.executable, "train.py", "experiment=speedrun", "data=image_folder", f"data.root={self.root}",
                f"paths.data_dir={self.cache}", f"hydra.run.dir={folder}", "trainer.enable_progress_bar=false",
                f"callbacks.time_to_target.target={target}", *self.cfg["speedrun"]["overrides"]]
        result = self.command("speedrun", argv, self.cfg["speedrun"]["timeout_s"])
        metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
        keys = ("time_to_target_s", "test/acc", "val/acc_best", "epochs", "wall_time_s", "train_images_per_s")
        return {**result, "target": target, "target_source": source, **{key: metrics.get(key) for key in keys},
                "run_status": metrics.get("status")}

    def runs_per_gpu(self) -> tuple[int, str]:
        chosen = self.cfg["zoo"]["runs_per_gpu"]
        if chosen != "auto":
            return int(chosen), "zoo.runs_per_gpu"
        k = self.report["parts"]["benchmark"].get("best_k")
        return ((k, "benchmark (f): the fewest runs at once within 5 % of the best images/s") if k
                else (4, "no packing result: 4"))

    def zoo(self) -> dict:
        from core.hardware import usable_cores

        z, cuda = self.cfg["zoo"], self.cfg["device"] == "cuda"
        k, why = self.runs_per_gpu()
        sweep = self.out / "zoo"
        placement = (["trainer=gpu_sweep", f"trainer.devices='${{device_slot:${{hydra:sweep.dir}},1,{k}}}'"] if cuda
                     else ["trainer=cpu"])
        argv = [sys.executable, "train.py", "-m", "experiment=compare_architectures", "hydra.sweeper.params=null",
                f"seed={','.join(map(str, z['seeds']))}", f"model={','.join(z['models'])}",
                f"trainer.max_epochs={z['epochs']}",
                "data=image_folder", f"data.root={self.root}", f"paths.data_dir={self.cache}", *placement,
                "hydra/launcher=joblib", f"hydra.launcher.n_jobs={k}", f"hydra.sweep.dir={sweep}",
                "trainer.enable_progress_bar=false", *z["overrides"]]
        tests = self.start_gpu_tests()
        budget = self.cfg["budget_s"] - self.cfg["reserve_s"] - self.elapsed()
        if budget < 30:
            result = {"status": "skipped", "reason": f"{budget:.0f} s left of the window's budget"}
        else:
            result = self.command("zoo", argv, budget, env={"OMP_NUM_THREADS": str(max(1, usable_cores() // k))})
            result["time_box_s"] = round(budget)
        self.report["parts"]["gpu_tests"] = self.gpu_tests(tests)
        finished = [json.loads(p.read_text()).get("status") for p in sweep.glob("*/metrics.json")]
        return {**result, "runs_per_gpu": k, "runs_per_gpu_source": why, "epochs": z["epochs"], "models": z["models"],
                "seeds": z["seeds"], "runs": len(z["models"]) * len(z["seeds"]),
                "completed": finished.count("completed")}

    def start_gpu_tests(self) -> subprocess.Popen | None:
        if self.cfg["device"] != "cuda":
            return None
        self.tests_started = time.perf_counter()
        argv = [sys.executable, "-m", "pytest", *self.cfg["gpu_tests"]["args"],
                f"--junitxml={self.out / 'gpu_tests.xml'}", "-q"]
        return self.start_command("gpu_tests", argv, env={"ZOO_DATA_ROOT": self.root})

    def gpu_tests(self, process: subprocess.Popen | None) -> dict:
        if process is None:
            return {"status": "skipped",
                    "reason": "the gpu tests need CUDA (tests/test_gpu.py skips itself without it)", "seconds": 0}
        ran = time.perf_counter() - self.tests_started  # they end with the zoo's time box at the latest
        timeout = min(self.cfg["gpu_tests"]["timeout_s"] - ran,
                      self.cfg["budget_s"] - self.cfg["reserve_s"] - self.elapsed())
        done = self.finish(process, timeout)
        outcome = junit(self.out / "gpu_tests.xml")
        status = ("timed out" if done["timed_out"] else
                  "completed" if done["returncode"] == 0 and outcome.get("passed") else "failed")
        return {"status": status, "command": done["command"], **outcome,
                "seconds": round(time.perf_counter() - self.tests_started, 1)}

    def compare(self) -> dict:
        sweep = self.out / "zoo"
        if not sweep.is_dir():
            return {"status": "skipped", "reason": "no zoo sweep dir"}
        result = self.command("compare", [sys.executable, "compare.py", f"dir={sweep}"],
                              max(30, self.cfg["budget_s"] - self.elapsed()))
        table = sweep / "comparison.md"
        return {**result, "table": table.read_text() if table.is_file() else "",
                "figures": sorted(str(p.relative_to(self.out)) for p in sweep.glob("*.png"))}


def machine(device: str) -> dict:
    import lightning as L
    import torch

    from core.hardware import cpu

    from .benchmarking import gpu

    c = cpu()
    return {"cpu": f"{c['model']} ({c['cores_usable']} cores usable)", "torch": torch.__version__,
            "lightning": L.__version__, "python": platform.python_version(),
            "gpu": gpu(torch.device("cuda")) if device == "cuda" else None}


def junit(path: Path) -> dict:
    """Passed, failed, skipped tests (with their names) from pytest's --junitxml."""
    if not path.is_file():
        return {}
    outcome: dict[str, list[str]] = {"passed": [], "failed": [], "skipped": []}
    for case in ElementTree.parse(path).iter("testcase"):
        kind = ("failed" if case.find("failure") is not None or case.find("error") is not None
                else "skipped" if case.find("skipped") is not None else "passed")
        outcome[kind].append(case.get("name", "?"))
    return outcome


# the report --------------------------------------------------------------------------------------
def _f(value, digits: int = 4, unit: str = "") -> str:
    return "—" if value is None else f"{value:.{digits}f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def _mean_std(summary: dict | None, digits: int = 4) -> str:
    if not summary:
        return "—"
    return (f"{summary['mean']:.{digits}f}"
            + (f" ± {summary['std']:.{digits}f}" if summary.get("std") is not None else ""))


def markdown(report: dict) -> str:
    """window.md: what ran, on what, and each part's figures (a part that did not run says why)."""
    m, parts = report["machine"], report["parts"]
    g = m.get("gpu")
    on = (f"{g['name']} ({g['memory_gib']:.0f} GiB, driver {g['driver']}, CUDA {g['cuda']}, cuDNN {g['cudnn']})" if g
          else f"the CPU ({m.get('cpu', '?')}): a dry run" if report["device"] == "cpu"
          else "a CUDA GPU (not read yet)")
    lines = [f"# GPU window: {on}", "",
             f"Command: `{report['command']}`, started {report['started']}, {report.get('elapsed_s', 0):.0f} s in all.",
             f"Host: {m.get('cpu', '?')}; torch {m.get('torch', '?')}, lightning {m.get('lightning', '?')}, python "
             f"{m.get('python', '?')}.",
             f"Data: `{report['data_root']}` ({_f(parts['data'].get('train_images'))} training and "
             f"{_f(parts['data'].get('test_images'))} test images), read by every part.", "", "## Parts", "",
             "| part | status | seconds | note |", "|---|---|---:|---|"]
    for name in PARTS:
        p = parts[name]
        lines.append(f"| {name} | {p['status']} | {_f(p.get('seconds'), 1)} | "
                     f"{(p.get('error') or p.get('reason') or '').replace('|', '/')} |")
    commands = [f"{name}: {parts[name]['command']}" for name in PARTS if parts[name].get("command")]
    lines += ["", "Each part's command, run from the repository root (its output: logs/<part>.log):", "", "```",
              *commands, "```", ""]
    lines += _peer(parts["peer"]) + _speedrun(parts["speedrun"], parts["peer"]) + _benchmark(parts["benchmark"])
    lines += _zoo(parts["zoo"], parts["compare"], on) + _tests(parts["gpu_tests"])
    return "\n".join(lines) + "\n"


def _peer(p: dict) -> list[str]:
    lines = ["## The peer: airbench94 on this copy", ""]
    if p.get("status") != "completed":
        return lines + [f"Not run: {p.get('reason') or p.get('error') or p.get('status')}.", ""]
    pub = p["published"]
    return lines + [
        f"airbench {p.get('airbench') or '?'}, {len(p['runs'])} runs after its warm-up, {p['train_images']:,} "
        f"training and {p['test_images']:,} test images of this copy:", "",
        "| | test accuracy, its test-time augmentation | without it | seconds (its own clock) |",
        "|---|---:|---:|---:|",
        f"| here | {_mean_std(p['tta_acc'])} | {_mean_std(p['acc'])} | {_mean_std(p['seconds'], 2)} |",
        f"| published ({pub['hardware']}, {pub['data']}) | {pub['tta_acc']:.4f} | — | {pub['seconds']:.2f} |", "",
        "The difference in accuracy is the measured cost of this copy of the images for a known recipe "
        f"({pub['source']}).", ""]


def _speedrun(s: dict, peer: dict) -> list[str]:
    lines = ["## The speedrun, against the peer's accuracy", ""]
    if s.get("status") == "pending" or "target" not in s:
        return lines + [f"Not run: {s.get('reason') or s.get('error') or s.get('status')}.", ""]
    reached = (f"reached it in **{s['time_to_target_s']:.1f} s** (from the end of its first step)"
               if s.get("time_to_target_s") else "did not reach it")
    anchor = (f" The peer took {_mean_std(peer['seconds'], 2)} s on the same GPU." if peer.get("status") == "completed"
              else "")
    return lines + [f"`train.py experiment=speedrun` ({s.get('run_status') or s['status']}), target {s['target']} val "
                    f"accuracy ({s['target_source']}): {reached}; best val {_f(s.get('val/acc_best'))}, test "
                    f"{_f(s.get('test/acc'))}, {_f(s.get('epochs'))} epochs, {_f(s.get('wall_time_s'), 1)} s of fit, "
                    f"{_f(s.get('train_images_per_s'), 0)} images/s.{anchor}", ""]


def _benchmark(b: dict) -> list[str]:
    lines = ["## The GPU step: train.py's Lightning step against the bare step", ""]
    if not b.get("ratio"):
        return lines + [f"Not measured: {b.get('reason') or b.get('error') or b.get('status')}.", ""]
    lines += [f"benchmark.py (b), {b['variant']}, batch {b['batch_size']}; the report is benchmark/benchmark.md:", "",
              "| model | bare img/s | Lightning img/s | Lightning / bare | target | host syncs per step |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in b["ratio"]:
        lines.append(f"| {r['model']} | {r['bare_img_s']:,.0f} | {r['lightning_img_s']:,.0f} | {r['ratio']:.2f} | "
                     f"{_f(r['target'], 2)} | {_f(r['syncs_per_step'], 2)} |")
    packed = b.get("packing")
    if packed:
        lines += ["", f"Packing, benchmark.py (f): {packed['model']} trained by k runs at once "
                  f"(batch {packed['batch_size']}, {packed['precision']}), aggregate images/s:", "",
                  "| k | images/s, all runs | speed-up |", "|---:|---:|---:|"]
        lines += [f"| {r['k']} | {'—' if r['images_per_s'] is None else format(r['images_per_s'], ',.0f')} | "
                  f"{_f(r['speedup'], 2, 'x')} |" for r in packed["rows"]]
        lines += ["", f"The zoo's runs at once chosen from it: k = {b.get('best_k')}."]
    return lines + [""]


def _zoo(z: dict, c: dict, on: str) -> list[str]:
    lines = ["## The zoo", ""]
    if "epochs" not in z:
        return lines + [f"Not run: {z.get('reason') or z.get('error') or z.get('status')}.", ""]
    lines += [f"{z['completed']} of {z['runs']} runs completed ({z['status']}): {len(z['models'])} models x seeds "
              f"{', '.join(map(str, z['seeds']))}, **{z['epochs']} epochs** of compare_architectures' recipe "
              "(SGD + Nesterov, lr 0.05, warm-up + cosine, batch 128, crop + flip; test accuracy of the "
              f"best-validation checkpoint), {z['runs_per_gpu']} runs at once ({z['runs_per_gpu_source']}) on {on}. "
              "Wall times are those of runs sharing the device. compare.py's table and figures (zoo/comparison.md, "
              + ", ".join(c.get("figures", [])) + "):", ""]
    return lines + [c.get("table", "").strip() or f"(compare.py: {c.get('status')})", ""]


def _tests(t: dict) -> list[str]:
    lines = ["## The gpu tests", ""]
    if t.get("status") in ("skipped", "pending"):
        return lines + [f"Not run: {t.get('reason') or t['status']}.", ""]
    names = lambda kind: ", ".join(t.get(kind, [])) or "none"  # noqa: E731
    return lines + [f"`{t.get('command', '')}` ({t['status']}, beside the zoo sweep): passed {names('passed')}; "
                    f"failed {names('failed')}; skipped {names('skipped')}.", ""]
