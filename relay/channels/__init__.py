"""One module per integration: each turns a notification into provider calls."""
