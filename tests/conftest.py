"""Shared test fixtures: small exact problems for the curvature routines."""

import os

# Multi-device code is tested on 8 fake CPU devices; must be set before jax initialises.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
