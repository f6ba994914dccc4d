"""Data: records -> Sample, and the synthetic task generators (``vlrl.data.synth``)."""

from vlrl.data.records import BadRowError, LoadReport, load_data, load_samples, sample_from_row, validate_samples

__all__ = ["BadRowError", "LoadReport", "load_data", "load_samples", "sample_from_row", "validate_samples"]
