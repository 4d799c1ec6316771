"""Exporting searched architectures: pictures and, later, deployable students."""
