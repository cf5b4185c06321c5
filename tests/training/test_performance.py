"""PerformanceSwitches, driven by a real lightning.Trainer, and its config group."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from core.hardware import cpu_has_amx_bf16
from models import create_model
from reporting.benchmarking import MemoryPeak
from training.module import ImageClassifier
from training.performance import PerformanceSwitches, check_precision, default_threads, precision_line, usable_precision

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(autouse=True)
def process_settings_restored():
    """Trainer(deterministic=True) and torch.compile change process-wide state; put it back for the other tests."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch._dynamo.reset()


def fit(switches: PerformanceSwitches, *callbacks, deterministic: bool = False, model: str = "lenet5",
        max_steps: int = 2):
    torch.manual_seed(0)
    net = create_model(model, num_classes=10, in_channels=3)
    module = ImageClassifier(net, optimizer=functools.partial(torch.optim.SGD, lr=0.01), num_classes=10)
    data = DataLoader(TensorDataset(torch.randn(24, 3, 32, 32), torch.randint(0, 10, (24,))), batch_size=8)
    trainer = L.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, deterministic=deterministic,
                        callbacks=[switches, *callbacks])
    trainer.fit(module, train_dataloaders=data)
    return trainer, module


class Seen(L.Callback):
    """What the process settings were while training ran."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.cudnn_benchmark = torch.backends.cudnn.benchmark
        self.threads = torch.get_num_threads()
        self.matmul_precision = torch.get_float32_matmul_precision()
        self.conv_precision = torch.backends.mkldnn.conv.fp32_precision


def test_channels_last_converts_the_weights_and_every_input_batch_and_keeps_parameter_names():
    inputs = []
    trainer, module = fit(PerformanceSwitches(channels_last=True))
    first_conv = next(m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last)
    first_conv.register_forward_hook(lambda m, args, out: inputs.append(args[0]))
    trainer.validate(module, DataLoader(TensorDataset(torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long))),
                     verbose=False)
    assert inputs and inputs[0].is_contiguous(memory_format=torch.channels_last)
    assert not inputs[0].is_contiguous()  # really NHWC: the loader gave NCHW
    plain = create_model("lenet5", num_classes=10, in_channels=3)
    assert list(module.net.state_dict()) == list(plain.state_dict())


def test_compile_compiles_the_network_in_place_without_renaming_its_parameters():
    graphs = []

    def counting_backend(graph_module, example_inputs):  # a torch.compile backend: count graphs, run eagerly
        graphs.append(graph_module)
        return graph_module.forward

    _, module = fit(PerformanceSwitches(compile=True, compile_backend=counting_backend))
    assert graphs, "torch.compile never traced the network"
    assert not any("_orig_mod" in key for key in module.state_dict())
    assert list(module.net.state_dict()) == list(create_model("lenet5", num_classes=10, in_channels=3).state_dict())


@pytest.mark.parametrize("mode, marked", [(None, False), ("max-autotune-no-cudagraphs", False),
                                          ("reduce-overhead", True)])
def test_compile_mode_reaches_torch_compile_and_cuda_graph_modes_mark_each_batch_a_new_iteration(
        mode, marked, monkeypatch):
    compiled, marks = [], []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kwargs: compiled.append(kwargs))
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    fit(PerformanceSwitches(compile=True, compile_mode=mode), max_steps=3)
    assert [c["mode"] for c in compiled] == [mode]
    assert len(marks) == (3 if marked else 0)  # one per training batch: replays of an earlier batch may be overwritten


def test_a_bad_compile_mode_is_one_line_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"compile_mode='fast'.*valid: null, default, reduce-overhead, max-autotune, "
                                         r"max-autotune-no-cudagraphs"):
        PerformanceSwitches(compile_mode="fast")


def test_cudnn_benchmark_and_matmul_precision_hold_during_fit_and_are_restored_after():
    before = torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()
    seen = Seen()
    fit(PerformanceSwitches(cudnn_benchmark=True, matmul_precision="medium"), seen)
    assert (seen.cudnn_benchmark, seen.matmul_precision) == (True, "medium")
    assert (torch.backends.cudnn.benchmark, torch.get_float32_matmul_precision()) == before


def test_cudnn_benchmark_gives_way_to_a_deterministic_trainer_with_a_warning_on_a_gpu():
    seen = Seen()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(PerformanceSwitches(cudnn_benchmark=True), seen, deterministic=True)
    assert seen.cudnn_benchmark is False
    assert not [w for w in caught if "cudnn_benchmark" in str(w.message)]  # on the CPU: nothing to warn about
    net = create_model("lenet5", num_classes=10, in_channels=3)
    switches = PerformanceSwitches(cudnn_benchmark=True)
    with pytest.warns(UserWarning, match="cudnn_benchmark=true is ignored"):
        switches.apply(net, deterministic=True, device=torch.device("cuda"))  # where the net will train
    assert torch.backends.cudnn.benchmark is False
    switches.restore()


def test_a_bad_matmul_precision_is_one_line_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"matmul_precision='fp16'.*highest, high, medium"):
        PerformanceSwitches(matmul_precision="fp16")


@pytest.mark.parametrize("option, expected", [
    ("off", dict(channels_last=False, compile=False, cudnn_benchmark=False, matmul_precision="highest", threads=0,
                 cpu_conv_precision=None)),
    ("default", dict(channels_last="auto", compile="auto", cudnn_benchmark=True, matmul_precision="high", threads=None,
                     cpu_conv_precision=None)),
    ("cpu", dict(channels_last=True, compile=True, threads=None)),
    ("fast", dict(channels_last=True, compile=True, cudnn_benchmark=True, matmul_precision="high")),
])
def test_the_performance_config_group_builds_the_callback(option, expected):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"performance={option}"])
    switches = instantiate(cfg.performance)
    assert isinstance(switches, PerformanceSwitches)
    assert {key: getattr(switches, key) for key in expected} == expected


def test_memory_peak_sees_a_large_cpu_allocation():
    with MemoryPeak(torch.device("cpu")) as peak:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        del block
    assert 48 * 2**20 < peak.bytes < 512 * 2**20


@pytest.mark.parametrize("threads", [1, 3])
def test_performance_threads_is_torchs_thread_count_during_fit_and_is_restored_after(threads):
    before, seen = torch.get_num_threads(), Seen()
    assert before != threads or threads == 1
    fit(PerformanceSwitches(threads=threads), seen)
    assert seen.threads == threads
    assert torch.get_num_threads() == before


def test_threads_null_is_omp_num_threads_when_set_else_the_usable_cores_shared_among_processes(monkeypatch):
    monkeypatch.setattr("training.performance.usable_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert (default_threads(), default_threads(processes=2), default_threads(processes=16)) == (8, 4, 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads(processes=2) == 3
    seen = Seen()
    fit(PerformanceSwitches(threads=None), seen)
    assert seen.threads == 3


def test_threads_0_leaves_torchs_own_count():
    torch.set_num_threads(1)
    try:
        seen = Seen()
        fit(PerformanceSwitches(threads=0), seen)
        assert seen.threads == 1
    finally:
        torch.set_num_threads(default_threads())


def test_auto_compiles_only_a_fit_long_enough_to_pay_back():
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    short = PerformanceSwitches(compile="auto", compile_min_steps=3, compile_backend=counting_backend)
    fit(short, max_steps=2)
    assert short.applied["compile"] is False and not graphs
    long = PerformanceSwitches(compile="auto", compile_min_steps=3, compile_backend=counting_backend)
    fit(long, max_steps=3)
    assert long.applied["compile"] is True and graphs


def test_auto_channels_last_is_on_for_a_convolutional_network_only():
    _, module = fit(PerformanceSwitches(channels_last="auto"))
    first_conv = next(m for m in module.net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last) and not first_conv.weight.is_contiguous()
    switches = PerformanceSwitches(channels_last="auto")
    fit(switches, model="logreg")
    assert switches.applied["channels_last"] is False


def test_a_bad_switch_value_is_one_line_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"compile='yes'.*true, false, auto"):
        PerformanceSwitches(compile="yes")
    with pytest.raises(ValueError, match=r"threads=-1"):
        PerformanceSwitches(threads=-1)


NO_BF16 = {"fma", "avx2", "avx512f"}  # a Zen 3/4-like CPU: AVX but no bf16 dot products


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
def test_bf16_on_a_cpu_without_bf16_instructions_is_refused(accelerator, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"trainer.precision=bf16-mixed: this CPU has no bf16 instructions"):
        check_precision("bf16-mixed", accelerator, flags=NO_BF16)
    check_precision("bf16-mixed", accelerator, flags=NO_BF16 | {"avx512_bf16"})  # with them: allowed
    check_precision("bf16-mixed", accelerator, flags=NO_BF16 | {"amx_bf16"})
    check_precision("32-true", accelerator, flags=NO_BF16)


def test_bf16_is_not_refused_for_a_gpu():
    check_precision("bf16-mixed", "gpu", flags=set())


# slow: a train.py process, about 7 s; default: the same refusal in this process
#   (test_bf16_on_a_cpu_without_bf16_instructions_is_refused)
@pytest.mark.slow
def test_train_py_refuses_bf16_on_a_cpu_without_bf16_in_one_line(tmp_path):
    """train.py as a user runs it, on a CPU whose /proc/cpuinfo lacks the bf16 flags (faked: this one may have them)."""
    import subprocess
    import sys

    from helpers import ROOT

    fake_cpu = ("import sys, runpy, core.hardware as h; h.cpu_flags = lambda: {'fma', 'avx2'}; "
                "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", fake_cpu, str(ROOT / "train.py"), "experiment=smoke", "trainer=cpu",
                             "trainer.precision=bf16-mixed", f"hydra.run.dir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("error: trainer.precision=bf16-mixed: this CPU has no bf16 instructions")


def test_auto_channels_last_stays_off_for_lbfgs_whose_flat_gradients_need_nchw():
    switches = PerformanceSwitches(channels_last="auto")
    net = create_model("lenet5", num_classes=10, in_channels=3)
    assert switches.decide(net, torch.device("cpu"),
                           optimizer=functools.partial(torch.optim.LBFGS, lr=1))["channels_last"] is False
    assert switches.decide(net, torch.device("cpu"),
                           optimizer=functools.partial(torch.optim.SGD, lr=1))["channels_last"] is True


# The kinds of CPU trainer.precision=auto tells apart, by their /proc/cpuinfo flags (faked: this machine is one).
AVX2_ONLY = {"fma", "avx", "avx2"}  # e.g. Zen 1-3, Intel before Cooper Lake: bf16 emulated
AVX512_BF16_ONLY = AVX2_ONLY | {"avx512f", "avx512_bf16"}  # e.g. Zen 4/5, Cooper Lake: bf16 dot products, no AMX
AMX = AVX512_BF16_ONLY | {"amx_tile", "amx_bf16"}  # Sapphire Rapids and later


@pytest.fixture
def cpu_kind(monkeypatch):
    """Make this machine a CPU with the given flags and no GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return lambda flags: monkeypatch.setattr("core.hardware.cpu_flags", lambda: set(flags))


@pytest.mark.parametrize("accelerator", ["cpu", "auto"])
@pytest.mark.parametrize("flags, expected, why", [
    (AMX, "bf16-mixed", "this CPU has AMX-BF16"),
    (AVX512_BF16_ONLY, "32-true", "this CPU has avx512_bf16 but no AMX"),
    (AVX2_ONLY, "32-true", "this CPU has no bf16 instructions"),
])
def test_precision_auto_is_bf16_exactly_where_the_cpu_has_amx(flags, expected, why, accelerator, cpu_kind):
    cpu_kind(flags)
    assert usable_precision("auto", accelerator) == expected
    assert precision_line("auto", accelerator).startswith(f"precision {expected} (trainer.precision=auto: {why}")


@pytest.mark.parametrize("flags", [AMX, AVX512_BF16_ONLY, AVX2_ONLY])
def test_an_explicit_precision_wins_whatever_the_cpu(flags, cpu_kind):
    cpu_kind(flags)
    assert usable_precision("32-true", "cpu") == "32-true" and precision_line("32-true", "cpu") is None
    if flags is AVX2_ONLY:  # bf16 emulated: refused, as before
        with pytest.raises(ValueError, match="this CPU has no bf16 instructions"):
            usable_precision("bf16-mixed", "cpu")
    else:  # asked for, it is run, AMX or not
        assert usable_precision("bf16-mixed", "cpu") == "bf16-mixed" and precision_line("bf16-mixed", "cpu") is None


@pytest.mark.parametrize("flags, expected", [(AMX, "bf16-mixed"), (AVX512_BF16_ONLY, "32-true")])
def test_the_entry_points_trainer_runs_in_what_auto_resolved_to(flags, expected, cpu_kind, tmp_path):
    """train.py and evaluate.py build their Trainer with cli.commandline.instantiate_trainer."""
    from omegaconf import OmegaConf

    from cli.commandline import instantiate_trainer

    cpu_kind(flags)
    node = OmegaConf.create({"_target_": "lightning.Trainer", "accelerator": "cpu", "precision": "auto",
                             "default_root_dir": str(tmp_path)})
    trainer = instantiate_trainer(node, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    assert trainer.precision == expected


# slow: a train.py process, about 7 s; default: what auto resolves to and the Trainer that runs in it, in this
#   process (test_precision_auto_is_bf16_exactly_where_the_cpu_has_amx,
#   test_the_entry_points_trainer_runs_in_what_auto_resolved_to)
@pytest.mark.slow
def test_train_py_prints_the_precision_auto_chose_first_and_records_it(tmp_path):
    """train.py as a user runs it, on a CPU whose /proc/cpuinfo has AMX (faked: this one may not)."""
    import json
    import subprocess
    import sys

    from helpers import ROOT

    fake_cpu = (f"import sys, runpy, core.hardware as h; h.cpu_flags = lambda: set({sorted(AMX)!r}); "
                "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", fake_cpu, str(ROOT / "train.py"), "experiment=smoke", "trainer=cpu",
                             "trainer.precision=auto", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                             "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[1] == ("precision bf16-mixed (trainer.precision=auto: "
                                             "this CPU has AMX-BF16 (amx_bf16 in /proc/cpuinfo))")
    assert json.loads((tmp_path / "metrics.json").read_text())["precision"] == "bf16-mixed"


def test_cpu_conv_precision_holds_during_fit_and_is_restored_after():
    before, seen = torch.backends.mkldnn.conv.fp32_precision, Seen()
    fit(PerformanceSwitches(cpu_conv_precision="bf16"), seen)
    assert seen.conv_precision == "bf16"
    assert torch.backends.mkldnn.conv.fp32_precision == before
    seen = Seen()
    fit(PerformanceSwitches(), seen)  # null: torch's own setting left alone
    assert seen.conv_precision == before


@pytest.mark.skipif(not cpu_has_amx_bf16(), reason="oneDNN computes float32 convolutions in bf16 only with AMX "
                    "(measured on a Zen 5 with avx512_bf16 and no AMX: the float32 result, bit for bit)")
def test_cpu_conv_precision_bf16_computes_float32_convolutions_in_bf16():
    torch.manual_seed(0)
    conv, x = torch.nn.Conv2d(16, 32, 3), torch.randn(4, 16, 16, 16)
    exact = conv(x)
    switches = PerformanceSwitches(cpu_conv_precision="bf16")
    switches.apply(torch.nn.Sequential(conv), threads=1)
    try:
        rounded = conv(x)
    finally:
        switches.restore()
    assert rounded.dtype == torch.float32
    assert 1e-4 < (rounded - exact).abs().max() < 0.1  # bf16's 8-bit mantissa, not a different result
    assert torch.equal(conv(x), exact)  # restored: true fp32 again


def test_a_bad_cpu_conv_precision_is_one_line_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"cpu_conv_precision='fp16'.*null, ieee, bf16"):
        PerformanceSwitches(cpu_conv_precision="fp16")
