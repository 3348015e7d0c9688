"""Helpers shared by agentdeck's test suites (not collected as tests)."""
