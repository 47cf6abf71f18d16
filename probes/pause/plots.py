"""Plotly figures for pause-token analysis: NIAH grids, depth curves, attention mass per layer."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import plotly.graph_objects as go

from workbench import atomic

Grid = Mapping[str, Mapping[str, float | None]]  # grid[length][depth]


def niah_heatmap(grid: Grid, title: str = "Needle in a haystack") -> go.Figure:
    """Heatmap of score by depth (x) and context length (y)."""
    lengths = sorted(grid, key=int)
    depths = sorted({d for row in grid.values() for d in row}, key=float)
    z = [[grid[length].get(d) for d in depths] for length in lengths]
    fig = go.Figure(go.Heatmap(z=z, x=[f"{float(d):.0%}" for d in depths], y=lengths, zmin=0, zmax=1,
                               colorscale="RdYlGn", colorbar={"title": "score"}))
    fig.update_layout(title=title, xaxis_title="needle depth", yaxis_title="context length (tokens)")
    return fig


def depth_curves(grids: Mapping[str, Grid], title: str = "Score by needle depth") -> go.Figure:
    """Lost-in-the-middle curves: one line per (condition, length)."""
    fig = go.Figure()
    for condition, grid in grids.items():
        for length in sorted(grid, key=int):
            depths = sorted(grid[length], key=float)
            fig.add_trace(go.Scatter(x=[float(d) for d in depths], y=[grid[length][d] for d in depths],
                                     mode="lines+markers", name=f"{condition} {length}"))
    fig.update_layout(title=title, xaxis_title="needle depth", yaxis_title="score", yaxis_range=[0, 1.05])
    return fig


def mass_by_layer(series: Mapping[str, Sequence[float]], title: str = "Attention mass per layer",
                  reference: Mapping[str, float] | None = None) -> go.Figure:
    """One line per series (e.g. needle without pauses, needle with pauses, pause tokens); dotted uniform levels."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(go.Scatter(x=list(range(len(values))), y=list(values), mode="lines+markers", name=name))
    for name, level in (reference or {}).items():
        fig.add_hline(y=level, line_dash="dot", annotation_text=f"uniform {name}")
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="attention mass (mean over query tokens)")
    return fig


def mass_heatmap(mass_LH: Sequence[Sequence[float]], title: str = "Attention mass per layer and head") -> go.Figure:
    fig = go.Figure(go.Heatmap(z=[list(row) for row in mass_LH], colorscale="Viridis"))
    fig.update_layout(title=title, xaxis_title="head", yaxis_title="layer")
    return fig


def save_html(fig: go.Figure, path: str | Path) -> Path:
    """Write a standalone HTML file atomically (plotly.js from the CDN keeps it small)."""
    with atomic.atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs="cdn")
    return Path(path)
