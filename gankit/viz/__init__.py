"""Pictures: grids, annotated grids, animations, plots, the run report."""
