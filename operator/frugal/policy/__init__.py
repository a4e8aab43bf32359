"""Pure decisions of the control loops; each returns the decision and its reason."""
