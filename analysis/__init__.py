"""Analyses of trained or freshly built nets: the effective receptive field (`analysis.erf`)."""
