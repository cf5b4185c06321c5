"""What TensorBoard 2.21 shows of a log dir, read back from the event files with its own backend code and
with its frontend's ordering rules ported (from the webfiles.zip of the tensorboard package):

- Time Series (the tab TensorBoard opens on) sorts every card (scalars, histograms, images) by tag with
  ``compareTagNames`` (digits compared as numbers, ``/`` and digits before any other character, else
  character codes), then groups the cards by the tag's first ``/`` segment, groups in order of their first card;
- the Scalars tab sorts its scalar tags the same way, ``_`` counting with ``/`` as a separator;
- HPARAMS: the backend's experiment (tensorboard/plugins/hparams), whose columns the dashboard stable-sorts by
  ``differs`` and ticks the first five of (tf-hparams-query-pane: ``Math.min(5, ...)``).
"""

from __future__ import annotations

import functools
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TICKED = 5  # the dashboard ticks this many hparam columns, and this many metric columns


def _number_end(text: str, start: int) -> int:
    """Where the number starting before ``start`` ends (TensorBoard's scan: digits, a '.', an exponent)."""
    state = "natural"
    for i in range(start, len(text)):
        c = text[i]
        if state == "natural":
            if c == ".":
                state = "real"
            elif c in "eE":
                state = "sign"
            elif not c.isdigit():
                return i
        elif state == "real":
            if c in "eE":
                state = "sign"
            elif not c.isdigit():
                return i
        elif state == "sign":
            if not c.isdigit() and c not in "+-":
                return i
            state = "exponent"
        elif not c.isdigit():
            return i
    return len(text)


def compare_tags(a: str, b: str, breaks: str = "/") -> int:
    """TensorBoard's compareTagNames: Time Series with ``breaks="/"``, the Scalars tab with ``"/_"``."""
    i = j = 0
    while True:
        if i == len(a):
            return 0 if j == len(b) else -1
        if j == len(b):
            return 1
        if a[i].isdigit() and b[j].isdigit():
            i2, j2 = _number_end(a, i + 1), _number_end(b, j + 1)
            x, y = float(a[i:i2]), float(b[j:j2])
            if x != y:
                return -1 if x < y else 1
            i, j = i2, j2
            if breaks == "/":  # Time Series' copy steps one further after equal numbers
                i, j = i + 1, j + 1
            continue
        a_break, b_break = a[i] in breaks or a[i].isdigit(), b[j] in breaks or b[j].isdigit()
        if a_break and not b_break:
            return -1
        if b_break and not a_break:
            return 1
        if not a_break and a[i] != b[j]:
            return -1 if a[i] < b[j] else 1
        i, j = i + 1, j + 1


def event_tags(logdir: Path) -> dict[str, set[str]]:
    """Every tag of every run under ``logdir``, by kind: scalars, histograms, images."""
    tags: dict[str, set[str]] = {"scalars": set(), "histograms": set(), "images": set()}
    for events in sorted({p.parent for p in Path(logdir).rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0, "histograms": 1, "images": 1})
        accumulator.Reload()
        for kind in tags:
            tags[kind] |= set(accumulator.Tags()[kind])
    return tags


def time_series_groups(logdir: Path) -> list[tuple[str, list[str]]]:
    """Time Series' groups, in the order it shows them: [(group, [tag, ...])]."""
    tags = sorted(set().union(*event_tags(logdir).values()), key=functools.cmp_to_key(compare_tags))
    groups: dict[str, list[str]] = {}
    for tag in tags:
        groups.setdefault(tag.split("/", 1)[0], []).append(tag)
    return list(groups.items())


def scalars_tab_tags(logdir: Path) -> list[str]:
    """The Scalars tab's tags, in its order."""
    return sorted(event_tags(logdir)["scalars"], key=functools.cmp_to_key(lambda a, b: compare_tags(a, b, "/_")))


def hparams_experiment(logdir: Path):
    """The experiment TensorBoard's HPARAMS tab reads for ``logdir`` (its backend, as ``tensorboard --logdir``
    serves it): ``(hparam columns, metric columns)``, each list in the dashboard's order, ticked ones first."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, get_experiment

    multiplexer = plugin_event_multiplexer.EventMultiplexer().AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer,
                                                            data_provider=provider))
    experiment = get_experiment.Handler(context.RequestContext(), backend, "", api_pb2.GetExperimentRequest()).run()
    hparams = sorted(experiment.hparam_infos, key=lambda info: not info.differs)  # stable, as the dashboard's sort
    return hparams, list(experiment.metric_infos)


def session_starts(logdir: Path) -> dict[str, object]:
    """Each run's HPARAMS session start (hparams, group name = trial id), by run dir."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    starts = {}
    for events in sorted({p.parent for p in Path(logdir).rglob("events.out.tfevents.*")}):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        content = accumulator.PluginTagToContent("hparams").get("_hparams_/session_start_info")
        if content:
            starts[events] = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return starts
