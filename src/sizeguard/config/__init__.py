"""Settings: presets, policy files and overrides, turned into a validated core Policy."""

from sizeguard.config.loader import PRESETS, load_policy, preset_names

__all__ = ["PRESETS", "load_policy", "preset_names"]
