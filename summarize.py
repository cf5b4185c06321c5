"""A zoo model layer by layer: output shape, parameters (and the textbook
N*F*F*D+N), MACs, receptive field, jump and (W-F+2P)/S+1, with totals.

    python summarize.py                                    # ResNet-18 at CIFAR-10's 3x32x32
    python summarize.py model=vgg16 input_size=224 format=markdown
    python summarize.py model=lenet5 data=digits format=csv output=lenet5.csv
    python summarize.py model=resnet50 model.stem=imagenet input_size=224 plot=true
    python summarize.py table=zoo                         # every model: params and MACs (the README's zoo table)
    python summarize.py table=zoo 'models=[resnet18,vgg16]'

Takes the same ``model=`` and ``data=`` configs as train.py; the data set is
only asked for its channels, classes and image size (nothing is downloaded).
``plot=true`` writes receptive_field.png into the run dir. An input too
small for the model is one line naming the layer where the map vanishes.
The analysis is in analysis/introspection.py, the zoo table in reporting/zoo.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from cli.commandline import entry_point
from cli.validation import check_run
from core.errors import UserError, user_errors_as_lines
from core.files import save_figure, write_text
from core.hardware import MAX_IMAGE_SIZE

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def input_size(cfg: DictConfig) -> tuple[int, int]:
    """(height, width) from ``input_size`` (an int or [h, w]), else data.image_size."""
    size = cfg.input_size if cfg.input_size is not None else cfg.data.get("image_size", 32)
    size = list(size) if isinstance(size, (list, tuple, ListConfig)) else [size, size]
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise UserError(f"input_size must be a positive integer or [height, width], got {cfg.input_size!r}")
    if max(size) > MAX_IMAGE_SIZE:  # checked before any tensor exists: 20000 pixels a side asks for hundreds of GB
        raise UserError(f"input_size={cfg.input_size if cfg.input_size is not None else size[0]}: at most "
                        f"{MAX_IMAGE_SIZE} pixels a side (one feature map of a larger input needs gigabytes)")
    return size[0], size[1]


def check_table(cfg: DictConfig) -> str:
    from models import list_models

    if cfg.table not in ("layers", "zoo"):
        raise UserError(f"table={cfg.table!r} is not valid; valid: layers, zoo")
    unknown = [name for name in cfg.models or [] if name not in list_models()]
    if unknown:
        raise UserError(f"models: {', '.join(map(str, unknown))}: unknown model; valid: {', '.join(list_models())}")
    return cfg.table


@user_errors_as_lines
def build(cfg: DictConfig):
    """Check the options, build the model, summarize it; bad input, including an
    input too small for the model, fails here as one line."""
    from analysis import introspection

    if cfg.format not in introspection.FORMATS:
        raise UserError(f"format={cfg.format!r} is not valid; valid: {', '.join(introspection.FORMATS)}")
    if cfg.output is not None and not Path(cfg.output).parent.is_dir():
        raise UserError(f"output={cfg.output}: the folder {Path(cfg.output).parent} does not exist")
    missing = sorted(key for group in ("data", "model") for key in OmegaConf.missing_keys(cfg[group]))
    if missing:
        raise UserError(f"{missing[0]} is required: add {missing[0]}=<value> to the command line")
    height, width = input_size(cfg)
    if height == width and "image_size" in cfg.data:
        cfg.data.image_size = height  # models whose classifier depends on the size (LeNet, linear) follow it
    datamodule = instantiate(cfg.data)  # constructed only: no download, no set-up
    net = instantiate(cfg.model, num_classes=datamodule.num_classes, in_channels=datamodule.in_channels)
    shape = (datamodule.in_channels, height, width)
    try:
        return introspection.summarize(net, shape)
    except introspection.FeatureMapVanishes as error:
        smallest = introspection.smallest_input_size(net, datamodule.in_channels, max(height, width))
        raise UserError(error.describe(cfg.model.name, smallest)) from None
    except RuntimeError as error:  # e.g. a classifier sized for another input: the chosen size does not fit
        raise UserError(f"{cfg.model.name} cannot take a {height}x{width} input: "
                        f"{str(error).splitlines()[0]}") from None


def draw_receptive_field(cfg: DictConfig, rows, totals) -> Path:
    """receptive_field_image.png: the first test image of ``data`` with the region the central
    unit of ``rf_layer`` (default: the last feature map) sees. The data set is loaded for this."""
    from core.figures import receptive_field_figure
    from training.diagnostics import unnormalize

    name = cfg.rf_layer or totals.last_map
    row = next((r for r in rows if r.name == name and r.rf is not None and len(r.output_shape or ()) == 4), None)
    if row is None:
        raise UserError(f"rf_layer={name!r} is not a layer with a spatial output; valid: a layer name of the table")
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    image = unnormalize(datamodule.test_set[0][0][None], datamodule.shift, datamodule.scale)[0]
    title = f"{cfg.model.name}, {name}: the central unit sees {row.rf[0]}x{row.rf[1]} input pixels"
    figure, _, _ = receptive_field_figure(image, row, title)
    return save_figure(figure, Path(cfg.paths.output_dir) / "receptive_field_image.png", dpi=120)


@hydra.main(version_base="1.3", config_path="configs", config_name="summarize")
@user_errors_as_lines  # bad input anywhere in the task: one line, exit 2 (Hydra would add a line of its own)
def main(cfg: DictConfig) -> dict:
    check_run(cfg)
    if user_errors_as_lines(check_table)(cfg) == "zoo":
        from reporting.zoo import zoo_lines

        for line in zoo_lines(list(cfg.models or [])):
            print(line, flush=True)
        return {}
    from analysis import introspection

    rows, totals = build(cfg)
    text = introspection.render(rows, totals, cfg.format, model_name=cfg.model.name)
    if cfg.output is None:
        sys.stdout.write(text)
    else:
        write_text(Path(cfg.output), text)  # atomic, never through a link
        print(f"wrote {cfg.output}", file=sys.stderr)
    if cfg.plot:
        from reporting.figures import receptive_field_profile

        path = Path(cfg.paths.output_dir) / "receptive_field.png"
        shape = "x".join(map(str, totals.input_shape[1:]))
        receptive_field_profile(rows, totals, path,
                                f"{cfg.model.name} at {shape}: receptive field and resolution by depth")
        print(f"wrote {path}", file=sys.stderr)
    if cfg.rf_image:
        print(f"wrote {user_errors_as_lines(draw_receptive_field)(cfg, rows, totals)}", file=sys.stderr)
    return {"params": totals.params, "macs": totals.macs}


if __name__ == "__main__":
    entry_point(CONFIG_DIR, main, config_name="summarize")()
