"""Every suite records its results through the matrix's pytest plugin (results/<profile>-*.json)."""

pytest_plugins = ["pipeline.matrix.pytest_results"]
