"""Writing a figure: matplotlib's object-oriented ``Figure`` (no pyplot state, so notebooks
keep their own backend), saved as PNG."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, path: str | Path) -> Path:
    """Save a matplotlib figure as PNG, creating folders (tight layout unless it has a layout engine)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
