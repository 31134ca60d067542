"""Test exporters: loopback /metrics endpoints serving real exporters' metric names with values a test sets."""
