"""Experiments: the only layer that wires data, models, training, methods and metrics together."""

from jaxunlearn.experiments.cache import ModelCache, default_cache_dir
from jaxunlearn.experiments.classification import (
    ForgettingConfig,
    prepare_seed,
    run_forgetting,
    run_method,
    run_seed,
    summarise,
)
from jaxunlearn.experiments.config import ConfigError, resolve_settings, to_toml
from jaxunlearn.experiments.many_models import ManyModelsResult, run_many_models
from jaxunlearn.experiments.registry import (
    ALL_METHODS,
    COMPARED,
    NOTES,
    SETTINGS,
    MethodContext,
    build_method,
    default_settings,
    make_optimizer,
    resolve_methods,
)
from jaxunlearn.experiments.report import format_table, plot_comparison, write_results
from jaxunlearn.experiments.scenario import parse_scenario
from jaxunlearn.experiments.sweep import grid_points, parse_grid, run_sweep, write_sweep

__all__ = [
    "ALL_METHODS", "COMPARED", "ConfigError", "ForgettingConfig", "ManyModelsResult", "MethodContext", "ModelCache",
    "NOTES", "SETTINGS", "build_method", "default_cache_dir", "default_settings", "format_table", "grid_points",
    "make_optimizer", "parse_grid", "parse_scenario", "plot_comparison", "prepare_seed", "resolve_methods",
    "resolve_settings", "run_forgetting", "run_many_models", "run_method", "run_seed", "run_sweep", "summarise",
    "to_toml", "write_results", "write_sweep",
]
