"""Settings: presets, policy files, the environment and overrides, turned into a validated core
Policy with the source of every value (:func:`resolve`)."""

from sizeguard.config.loader import PRESETS, preset_names
from sizeguard.config.settings import Resolved, load_policy, resolve

__all__ = ["PRESETS", "Resolved", "load_policy", "preset_names", "resolve"]
