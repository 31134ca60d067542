"""Reviewing a change to routes.yaml before it lands: `relay routes check --strict` and `relay routes diff`."""
