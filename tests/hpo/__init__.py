"""Tests of llmbo.hpo (a package, so its test modules may share names with tests/)."""
