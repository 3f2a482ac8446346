"""Experiments: the only layer that wires data, models, training, methods and metrics together."""

from jaxunlearn.experiments.classification import ForgettingConfig, run_forgetting, run_seed, summarise
from jaxunlearn.experiments.many_models import ManyModelsResult, run_many_models
from jaxunlearn.experiments.registry import ALL_METHODS, COMPARED, NOTES, MethodContext, build_method, resolve_methods
from jaxunlearn.experiments.report import format_table, plot_comparison, write_results
from jaxunlearn.experiments.scenario import parse_scenario

__all__ = [
    "ALL_METHODS", "COMPARED", "ForgettingConfig", "ManyModelsResult", "MethodContext", "NOTES", "build_method",
    "format_table", "parse_scenario", "plot_comparison", "resolve_methods", "run_forgetting", "run_many_models",
    "run_seed", "summarise", "write_results",
]
