"""voxfleet.evaluation: scenario tests of voice agents with real calls (`voxfleet eval scenarios.yaml`).

Scenario files (YAML, JSON Schema in scenario-suite.schema.json) script callers; the runner places real calls
through a voxfleet gateway into LiveKit rooms, judges what a caller hears, and writes a table, JUnit XML, a
JSON report and a comparison with a saved baseline.
"""
