"""Showing: the Textual dashboard, its screens and widgets, and the ``agentdeck`` command line."""
