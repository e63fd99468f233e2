"""One module per `python -m rvs` command (rvs.cli loads them by name): argument parsing and a call into the pipeline."""
