"""The tree searchers: update rules as expression trees for `diffsearch optimizer`."""
