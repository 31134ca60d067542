"""The few panel shapes the dashboards use, on grafana-foundation-sdk, all reading Prometheus through `$datasource`.

A dashboard is a `Board`: panels get ids and refIds in order and flow left to right
in rows of 24 columns, so the dashboard modules only say what a panel shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common, dashboard, gauge, heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import (
    BigValueColorMode,
    BigValueGraphMode,
    GraphThresholdsStyleMode,
    LegendDisplayMode,
    LegendPlacement,
    StackingMode,
    VisibilityMode,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
GREEN, YELLOW, RED = "green", "yellow", "red"


@dataclass(frozen=True)
class Query:
    """One PromQL target: `legend` is Grafana's legendFormat; `instant` asks for the value now only."""

    expr: str
    legend: str = ""
    instant: bool = False


def steps(*pairs: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds; the first pair's value is None (from minus infinity)."""
    return (dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=value, color=color) for value, color in pairs]))


def above(limit: float, color: str = RED) -> dashboard.ThresholdsConfig:
    """Green below `limit`, `color` from it: the shape of most alert thresholds in the plan."""
    return steps((None, GREEN), (limit, color))


def below(limit: float, color: str = RED) -> dashboard.ThresholdsConfig:
    """`color` below `limit`, green from it (hit ratios, availability)."""
    return steps((None, color), (limit, GREEN))


def state(off: str, on: str, *, bad: str = "0") -> list[model.ValueMapping]:
    """A 0/1 gauge shown as words: 0 is `off`, 1 is `on`; the `bad` one red, the other green."""
    return [model.ValueMap(options={
        "0": model.ValueMappingResult(text=off, color=RED if bad == "0" else GREEN, index=0),
        "1": model.ValueMappingResult(text=on, color=RED if bad == "1" else GREEN, index=1),
    })]


def _targets(queries: Sequence[Query], *, heatmap_format: bool = False) -> list[Builder[Dataquery]]:
    targets: list[Builder[Dataquery]] = []
    for index, query in enumerate(queries):
        target = prometheus.Dataquery().expr(query.expr).ref_id(chr(ord("A") + index)).datasource(DATASOURCE)
        if query.legend:
            target = target.legend_format(query.legend)
        if query.instant:
            target = target.instant()
        if heatmap_format:
            target = target.format(PromQueryFormat.HEATMAP)
        targets.append(target)
    return targets


def timeseries_panel(title: str, description: str, unit: str, queries: Sequence[Query], *,
                     threshold: dashboard.ThresholdsConfig | None = None, dashed: bool = True,
                     stacked: bool = False, minimum: float | None = 0, maximum: float | None = None,
                     ) -> timeseries.Panel:
    """A graph; with `threshold`, its steps are drawn as lines (dashed) across the graph: the target to beat."""
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .targets(_targets(queries)).fill_opacity(10).line_width(1)
             .show_points(VisibilityMode.NEVER)
             .legend(common.VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.TABLE)
                     .placement(LegendPlacement.BOTTOM).calcs(["mean", "max", "lastNotNull"])))
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    if threshold is not None:
        mode = GraphThresholdsStyleMode.DASHED if dashed else GraphThresholdsStyleMode.LINE
        panel = panel.thresholds(threshold).thresholds_style(common.GraphThresholdsStyleConfig().mode(mode))
    if stacked:
        panel = panel.stacking(common.StackingConfig().mode(StackingMode.NORMAL)).fill_opacity(40)
    return panel


def stat_panel(title: str, description: str, unit: str, queries: Sequence[Query], *,
               thresholds: dashboard.ThresholdsConfig | None = None,
               mappings: list[model.ValueMapping] | None = None, no_value: str | None = None,
               graph: bool = True, decimals: float | None = None) -> stat.Panel:
    """One big number (the last value), coloured by `thresholds`; `no_value` stands in for an empty result."""
    panel = (stat.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .targets(_targets(queries)).thresholds(thresholds or steps((None, GREEN)))
             .color_mode(BigValueColorMode.VALUE)
             .graph_mode(BigValueGraphMode.AREA if graph else BigValueGraphMode.NONE)
             .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if mappings:
        panel = panel.mappings(mappings)
    if no_value is not None:
        panel = panel.no_value(no_value)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def gauge_panel(title: str, description: str, unit: str, queries: Sequence[Query], *,
                thresholds: dashboard.ThresholdsConfig, maximum: float = 1) -> gauge.Panel:
    """A used-versus-limit dial from 0 to `maximum`, with the alert's threshold marked."""
    return (gauge.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
            .targets(_targets(queries)).thresholds(thresholds).min(0).max(maximum)
            .show_threshold_markers(True)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def table_panel(title: str, description: str, unit: str, queries: Sequence[Query]) -> table.Panel:
    """Instant values as rows (one per series), for top-N lists."""
    instant = [Query(q.expr, q.legend, instant=True) for q in queries]
    return (table.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
            .targets(_targets(instant)))


def heatmap_panel(title: str, description: str, unit: str, query: Query) -> heatmap.Panel:
    """A latency histogram over time, from a classic histogram's buckets (format heatmap)."""
    return (heatmap.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
            .targets(_targets([query], heatmap_format=True)).calculate(False))


class Board:
    """A dashboard being assembled: `add()` panels in reading order, `row()` starts a titled band."""

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self._next_id = 1
        self._builder = (dashboard.Dashboard(title).uid(uid).description(description).tags(tags)
                         .time("now-1h", "now").refresh("30s").timezone("browser").editable()
                         .tooltip(model.DashboardCursorSync.CROSSHAIR)
                         .annotation(dashboard.AnnotationQuery().name("Annotations & Alerts").built_in(1)
                                     .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                                     .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)").type("dashboard"))
                         .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                                        .type("prometheus")))

    def variable(self, name: str, label: str, query: str, *, include_all: bool = True) -> None:
        """A variable from `label_values(metric, label)`; "All" matches every value (`.*`)."""
        variable = (dashboard.QueryVariable(name).label(label).datasource(DATASOURCE).query(query)
                    .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))
        if include_all:
            variable = variable.multi(True).include_all(True).all_value(".*").current(
                model.VariableOption(selected=True, text="All", value="$__all"))
        self._builder = self._builder.with_variable(variable)

    def link_tag(self, tag: str, title: str) -> None:
        """A drop-down of the other dashboards with `tag`, keeping time range and variables."""
        self._builder = self._builder.link(dashboard.DashboardLink(title).type(model.DashboardLinkType.DASHBOARDS)
                                           .tags([tag]).as_dropdown(True).include_vars(True).keep_time(True))

    def row(self, title: str) -> None:
        self._builder = self._builder.with_row(dashboard.Row(title).id(self._take_id()))

    def add(self, panel: Builder[model.Panel], width: int, height: int = 8) -> None:
        built = panel.build()
        built.id_val = self._take_id()
        built.grid_pos = model.GridPos(h=height, w=width)
        self._builder = self._builder.with_panel(_Built(built))

    def build(self) -> model.Dashboard:
        return self._builder.build()

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1


class _Built(Builder[model.Panel]):
    """An already built panel handed back to the dashboard builder (it only takes builders)."""

    def __init__(self, panel: model.Panel) -> None:
        self._panel = panel

    def build(self) -> model.Panel:
        return self._panel
