"""Measuring models: parameter counts, FLOPs (pooling included), latency and the hardware they ran on."""
from .profile import count_flops, count_params, hardware_info, measure_latency, profile_classifier

__all__ = ["count_flops", "count_params", "hardware_info", "measure_latency", "profile_classifier"]
