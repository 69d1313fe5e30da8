"""Implementations of the `sgfast` subcommands that are not training entry points (those are in train/)."""
