"""Prefect flows, deployments and the ``kl-drift`` CLI over :mod:`pipeline`."""
