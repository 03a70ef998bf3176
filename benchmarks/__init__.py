"""hamer_ros's benchmarks, one module each; they print numbers (tables, ratios), never assert.
Run from the repository root: `python -m benchmarks` lists them, `python -m benchmarks NAME --help`."""
