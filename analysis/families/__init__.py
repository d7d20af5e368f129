"""A family's analysis: its data and findings, no matplotlib; the report lays
them out in analysis.sections."""
