"""summarize.py as a user runs it: each output format read back, the plot, one-line errors."""

from __future__ import annotations

import csv
import io
import json

from PIL import Image

from helpers import run_script

RESNET18_PARAMS = 11_173_962  # at 3x32x32, 10 classes, CIFAR stem (README's zoo table)


def assert_one_line_error(capsys, argv: list[str], text: str) -> None:
    """``python summarize.py <argv>`` in this process (tests/inprocess.py; its __main__ runs in the tests above):
    exit status 2, no traceback, and the last line of stderr is the one error line."""
    from inprocess import run_entry

    code, stderr = run_entry("summarize.py", argv, capsys, stage="run")
    assert code == 2, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr
    assert text in errors[0], errors[0]


def summarize(capsys, *argv: str) -> tuple[int, str, str]:
    """``python summarize.py <argv>`` in this process (tests/inprocess.py): (exit status, stdout, stderr). Its
    __main__ runs as a real process in test_json_on_stdout_is_the_whole_output_and_adds_up."""
    from inprocess import run_entry_output

    code, out, err = run_entry_output("summarize.py", list(argv), capsys)
    assert code in (0, None), err[-3000:]
    return code, out, err


def test_table_on_the_terminal_and_the_receptive_field_plot(tmp_path, capsys):
    _, stdout, _ = summarize(capsys, "model=resnet18", "plot=true", f"hydra.run.dir={tmp_path}")
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["layer", "type", "output"]
    conv1 = next(line.split() for line in lines if line.startswith("conv1 "))
    assert conv1 == ["conv1", "Conv2d", "64x32x32", "1,728", "1,728", "1,769,472", "3", "1", "32x32"]
    assert f"resnet18 at 3x32x32: {RESNET18_PARAMS:,} parameters" in stdout
    assert "receptive field of the last feature map (layer4.1.act_out): 109 pixels, jump 8" in stdout
    image = Image.open(tmp_path / "receptive_field.png")
    assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 300


def test_json_on_stdout_is_the_whole_output_and_adds_up_and_no_run_dir_is_left(tmp_path):
    """As a user runs it, from a folder of their own: the JSON is all of stdout (a pipe takes it whole), and a
    command that only prints leaves nothing behind (the run dir Hydra made, outputs/<...>, is removed)."""
    result = run_script("summarize.py", "model=vgg11", "format=json", cwd=tmp_path)
    assert result.returncode == 0 and "error: " not in result.stderr, result.stderr[-3000:]
    assert not any(tmp_path.iterdir()), list(tmp_path.rglob("*"))
    report = json.loads(result.stdout)
    layers, totals = report["layers"], report["totals"]
    assert report["model"] == "vgg11" and totals["params"] == 9_750_922 == sum(r["params"] for r in layers)
    assert totals["macs"] == sum(r["macs"] for r in layers) == 153_293_824
    first = layers[0]
    assert (first["name"], first["output_shape"], first["formula_params"], first["rf"], first["jump"]) == (
        "features.0", [1, 64, 32, 32], 64 * 3 * 3 * 3 + 64, [3, 3], [1, 1])
    assert totals["last_map"] == "features.20" and totals["last_map_rf"] == [150, 150]


def test_csv_into_a_file_at_another_input_size(tmp_path, capsys):
    out = tmp_path / "lenet5.csv"
    _, stdout, _ = summarize(capsys, "model=lenet5", "data=digits", "input_size=64", "format=csv", f"output={out}",
                             f"hydra.run.dir={tmp_path / 'run'}")
    assert stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["name"] for r in rows[:4]] == ["features.0", "features.1", "features.2", "features.3"]
    conv = rows[0]  # 6 filters 5x5 over 1 channel (digits are grey) at 64x64
    assert (conv["output_shape"], conv["params"], conv["formula_size"],
            conv["rf"]) == ("1x6x60x60", "156", "60x60", "5x5")
    assert rows[-1]["name"] == "total" and int(rows[-1]["params"]) == sum(int(r["params"]) for r in rows[:-1])


def test_markdown_table_for_a_readme(tmp_path, capsys):
    _, stdout, _ = summarize(capsys, "model=resnet20", "format=markdown", "input_size=64", f"hydra.run.dir={tmp_path}")
    lines = stdout.splitlines()
    assert lines[0] == "| layer | type | output | params | N*F*F*D+N | MACs | RF | jump | (W-F+2P)/S+1 |"
    assert lines[1].startswith("|---|---|---|---:|")
    assert "| conv1 | Conv2d | 16x64x64 | 432 | 432 | 1,769,472 | 3 | 1 | 64x64 |" in lines
    assert any(line.startswith("- resnet20 at 3x64x64: 269,722 parameters") for line in lines)


def test_an_input_too_small_is_one_line_naming_the_layer_and_the_smallest_size(tmp_path, capsys):
    assert_one_line_error(capsys, ["model=vgg11", "input_size=8", f"hydra.run.dir={tmp_path}"],
                          "error: input 8x8 is too small for vgg11: the feature map vanishes at features.15 "
                          "(MaxPool2d: 1x1 -> 0x0); use input_size >= 32")


def test_a_bad_format_is_one_line_with_the_valid_ones(tmp_path, capsys):
    assert_one_line_error(capsys, ["format=xml", f"hydra.run.dir={tmp_path}"],
                          "format='xml' is not valid; valid: table, csv, json, markdown")


def test_the_zoo_table_is_the_readmes_and_comes_from_the_registry(tmp_path, capsys):
    """table=zoo prints the README's rows (paper and year from each model file's PAPER, counts from analysis/)."""
    from helpers import ROOT

    names = ["lenet5", "logreg", "resnet20", "alexnet"]
    _, stdout, _ = summarize(capsys, "table=zoo", f"models=[{','.join(names)}]", f"hydra.run.dir={tmp_path}")
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and not line.startswith("| model")]
    assert [row.split(" | ")[0][2:] for row in rows] == ["logreg", "lenet5", "alexnet", "resnet20"]  # by paper year
    readme = (ROOT / "README.md").read_text().splitlines()
    for row in rows:
        assert row in readme, row
    assert_one_line_error(capsys, ["table=zoo", "models=[resnet999]", f"hydra.run.dir={tmp_path}"],
                          "models: resnet999: unknown model; valid: alexnet")
