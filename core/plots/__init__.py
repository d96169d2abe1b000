"""Pictures (matplotlib, no display): the training curve and the analysis plots."""
