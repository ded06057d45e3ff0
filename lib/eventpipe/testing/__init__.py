"""Support for the reliability tests that ships with the package: fault-injection points."""
