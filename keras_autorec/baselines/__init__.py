"""Baseline recommenders trained and evaluated on the same splits and protocol as AutoRec."""
