"""The benchmark suite (``agentdeck bench``): speed measured as ratios against a peer run in the same process
and as percentiles — never asserted in tests."""
