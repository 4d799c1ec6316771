"""`bertnas bench`: the searched student against random search, hand-designed students and ablations."""
