"""Analyses built on the public API: reproductions of published studies, side by side with
their figures (each module runs with ``python -m perfmodel.analysis.<name>``)."""
