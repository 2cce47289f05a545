"""Configuration: policy TOML to frozen, validated objects."""

from mailroute.config.options import Options
from mailroute.config.policy import load_policy, policy_from_mapping

__all__ = ["Options", "load_policy", "policy_from_mapping"]
