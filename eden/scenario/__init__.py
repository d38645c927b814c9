"""Scenario files: the format (``model``), loading and cross-checks (``load``), metric names."""

from eden.scenario.load import DeviceSpec, LoadedScenario, load_any, load_scenario, scenario_json_schema
from eden.scenario.model import Scenario

__all__ = ["DeviceSpec", "LoadedScenario", "Scenario", "load_any", "load_scenario", "scenario_json_schema"]
