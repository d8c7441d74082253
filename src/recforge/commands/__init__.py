"""CLI subcommand groups, one module each (see recforge.cli)."""
