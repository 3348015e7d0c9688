"""The store conformance suite and the implementations it runs against."""
